"""The CLI's shared behaviour: --help that teaches, YAML configs with key=value
overrides, one-line errors for bad command lines."""
import json

import pytest


@pytest.mark.parametrize("command", ["inspect", "forward", "prune", "tokenize"])
def test_every_command_has_help_with_an_example(command, moelab):
    proc = moelab(command, "--help")
    assert "Example" in proc.stdout
    assert "moelab " + command in proc.stdout


def test_yaml_config_supplies_options_and_overrides_win(fixtures, moelab, tmp_path):
    cfg = tmp_path / "run.yaml"
    out_yaml = tmp_path / "from_yaml"
    out_cli = tmp_path / "from_override"
    cfg.write_text(f"model: {fixtures / 'models' / 'mixtral'}\n"
                   f"drop: ['0:1', '1:2,3']\n"
                   f"out: {out_yaml}\n")
    moelab("prune", "--config", cfg, f"out={out_cli}", "save_dtype=bfloat16")
    assert out_cli.exists() and not out_yaml.exists()
    info = json.loads(moelab("inspect", out_cli, "--json").stdout)
    assert [layer["experts"] for layer in info["layers"]] == [7, 6, 8]
    assert json.loads((out_cli / "config.json").read_text())["dtype"] == "bfloat16"


def test_bad_command_lines_are_one_line_errors(fixtures, moelab, tmp_path):
    for args in (["inspect", tmp_path / "missing"],
                 ["prune", fixtures / "models" / "mixtral", "--drop", "zero:one", "--out", tmp_path / "o"],
                 ["inspect", fixtures / "models" / "mixtral", "--no-such-option"],
                 ["forward", fixtures / "models" / "mixtral", "--dtype", "float8"]):
        proc = moelab(*args, check=False)
        assert proc.returncode == 2, args
        assert proc.stderr.startswith("error: ") and proc.stderr.strip().count("\n") == 0, proc.stderr
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("model: [unclosed\n")
    proc = moelab("inspect", "--config", bad_yaml, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0


def test_log_level_error_silences_info_and_warnings(fixtures, moelab, tmp_path):
    proc = moelab("--log-level", "error", "prune", fixtures / "models" / "mixtral", "--drop", "0:1",
                  "--out", tmp_path / "o")
    assert proc.stderr == ""
    proc = moelab("prune", fixtures / "models" / "mixtral", "--drop", "0:1", "--out", tmp_path / "p")
    assert "wrote" in proc.stderr


def test_the_cuda_plugin_exports_what_the_binary_looks_up(moelab_bin):
    """The entry points cluster/cuda_support.cpp finds with dlsym (NCCL, the device memory
    peak and cache release of --layerwise on a GPU); checked on the symbol table, since a
    machine without a GPU cannot run them."""
    import pathlib
    import shutil
    import subprocess
    plugin = pathlib.Path(moelab_bin).parent / "libmoelab_cuda.so"
    if not plugin.exists() or shutil.which("nm") is None:
        pytest.skip("this build has no CUDA plugin")
    symbols = subprocess.run(["nm", "-D", "--defined-only", plugin], capture_output=True, text=True,
                             check=True).stdout
    for name in ("moelab_make_nccl_communicator", "moelab_cuda_peak_allocated", "moelab_cuda_empty_cache"):
        assert f" T {name}\n" in symbols, name


@pytest.mark.parametrize("user_value", [None, "munge"])
def test_ranks_relaunch_gives_mpirun_native_pmix_security_unless_the_user_chose(user_value, fixtures, moelab_bin,
                                                                                 tmp_path):
    """`--ranks 2` execs mpirun with PMIX_MCA_psec=native (munge installed without its daemon
    costs every mpirun 2.3 s); a value the user set is passed on as it is. A stand-in mpirun
    first on PATH records what it was given."""
    import os
    import subprocess
    fake = tmp_path / "bin" / "mpirun"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "psec=${{PMIX_MCA_psec:-unset}} args=$*" > {tmp_path / "seen"}\n')
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "PMIX_MCA_psec"}
    env["PATH"] = f"{fake.parent}:{env['PATH']}"
    if user_value:
        env["PMIX_MCA_psec"] = user_value
    proc = subprocess.run([moelab_bin, "--ranks", "2", "inspect", fixtures / "models" / "mixtral"], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    seen = (tmp_path / "seen").read_text()
    assert seen.startswith(f"psec={user_value or 'native'} ") and " -np 2 " in seen, seen
