"""The CPU-side steps of scripts/gpu_check.sh (issue 29): what runs on a lent GPU machine,
where no package registry is reachable, must not spend its minutes failing at setup.
Checked here: both scripts parse, .deb files unpack into a prefix of their own (not /),
and moelab configures against a given torch (the build and the CUDA steps need the GPU)."""
import os
import pathlib
import shutil
import subprocess

import pytest

from helpers import REPO

GATHER = REPO / "scripts" / "gather_device_deps.sh"
CHECK = REPO / "scripts" / "gpu_check.sh"
GATHERED = REPO / ".device" / "debs"
# two small runtime libraries of the gathered set (a few KB each)
TINY = ("libsz2", "libkeyutils1")


def bash(cmd, timeout=120, env=None):
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=REPO)


def torch_cmake_prefix():
    proc = subprocess.run(["python3", "-c", "import torch; print(torch.utils.cmake_prefix_path)"],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        pytest.skip(f"no torch for python3 here: {proc.stderr.strip()[-200:]}")
    return pathlib.Path(proc.stdout.strip())


def cache_value(build, key):
    for line in (build / "CMakeCache.txt").read_text().splitlines():
        if line.startswith(key + ":"):
            return line.split("=", 1)[1]
    return None


@pytest.fixture(scope="module")
def tiny_debs(tmp_path_factory):
    """Two tiny .deb files: from .device/debs when gathered, else downloaded (skip offline)."""
    d = tmp_path_factory.mktemp("debs")
    for pkg in TINY:
        have = sorted(GATHERED.glob(f"{pkg}_*.deb"))
        if have:
            shutil.copy(have[0], d)
    if len(list(d.glob("*.deb"))) < len(TINY):
        if not shutil.which("apt-get"):
            pytest.skip("no apt-get and no gathered .deb files (scripts/gather_device_deps.sh)")
        proc = subprocess.run(["apt-get", "download", "-q", *TINY], cwd=d, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            pytest.skip(f"apt-get download failed (network unavailable?): {proc.stderr.strip()[-300:]}")
    return d


def test_both_scripts_parse():
    for script in (GATHER, CHECK):
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    if shutil.which("shellcheck"):
        proc = subprocess.run(["shellcheck", "-S", "warning", str(GATHER), str(CHECK)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout


def test_dry_run_is_the_cpu_steps_only():
    proc = bash(f"source {CHECK}; echo $CPU_STEPS")
    assert proc.stdout.split() == ["unpack", "configure"]


def test_debs_unpack_into_the_prefix_not_into_root(tiny_debs, tmp_path):
    prefix = tmp_path / "prefix"
    debs = sorted(tiny_debs.glob("*.deb"))
    contents = {}
    for deb in debs:
        listing = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
        names = subprocess.run(["tar", "-t"], input=listing, capture_output=True, check=True).stdout.decode().split()
        contents[deb] = [n[2:] for n in names if n.startswith("./") and not n.endswith("/")]
    # the same files in / (present where the package is installed) must stay untouched
    before = {f: os.lstat("/" + f) for files in contents.values() for f in files if os.path.lexists("/" + f)}
    proc = bash(f'source {CHECK}; unpack_debs "{tiny_debs}" "{prefix}"')
    assert proc.returncode == 0, proc.stderr
    assert f"unpacked {len(debs)} new of {len(debs)}" in proc.stderr
    for deb, files in contents.items():
        assert files, deb
        for f in files:
            assert os.path.lexists(prefix / f), f"{f} of {deb.name} not under the prefix"
    for f, st in before.items():
        now = os.lstat("/" + f)
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), f"/{f} was rewritten"
    assert (prefix / "bin" / "pkg-config").exists()
    # a second run (a warm machine) unpacks nothing again
    proc = bash(f'source {CHECK}; unpack_debs "{tiny_debs}" "{prefix}"')
    assert proc.returncode == 0 and "unpacked 0 new" in proc.stderr, proc.stderr
    # no .deb files: a clear failure, not a silent success
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = bash(f'source {CHECK}; unpack_debs "{empty}" "{tmp_path / "p2"}"')
    assert proc.returncode != 0 and "gather_device_deps.sh" in proc.stderr


def test_configure_only_against_a_given_torch(tiny_debs, tmp_path):
    torch_prefix = torch_cmake_prefix()
    prefix, build = tmp_path / "prefix", tmp_path / "build"
    proc = bash(f'source {CHECK}; unpack_debs "{tiny_debs}" "{prefix}" && '
                f'configure_moelab "{build}" "{torch_prefix}" "{prefix}"', timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    torch_dir = cache_value(build, "Torch_DIR")
    assert torch_dir and pathlib.Path(torch_dir).resolve() == (torch_prefix / "Torch").resolve()
    assert cache_value(build, "CMAKE_GENERATOR") == "Ninja"
    assert not (build / "runner" / "moelab").exists()  # configured, nothing built


@pytest.mark.skipif(not list(GATHERED.glob("libopenmpi-dev_*.deb")),
                    reason="the full set is not gathered (bash scripts/gather_device_deps.sh)")
def test_dry_run_finds_every_debian_library_in_the_prefix(tmp_path):
    """With every gathered .deb: `gpu_check.sh --dry-run` unpacks and configures, and CMake
    takes MPI, HDF5, ICU, PCRE2 and the config packages from the prefix, not from /usr."""
    torch_cmake_prefix()
    prefix, build, out = tmp_path / "prefix", tmp_path / "build", tmp_path / "out"
    proc = subprocess.run(["bash", str(CHECK), "--dry-run"], capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "MOELAB_DEVICE_PREFIX": str(prefix), "MOELAB_GPU_BUILD": str(build),
                               "OUT": str(out)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = (out / "gpu_check.txt").read_text()
    assert summary == proc.stdout.strip() + "\n"
    lines = {ln.split()[0]: ln for ln in summary.splitlines() if ln.split()}
    assert " ok " in lines["unpack"] and " ok " in lines["configure"], summary
    assert "build" not in lines
    for key in ("MPI_C_HEADER_DIR", "MPI_mpi_LIBRARY", "HDF5_C_INCLUDE_DIR", "HDF5_hdf5_LIBRARY_RELEASE",
                "ICU_UC_LIBRARY_RELEASE", "pkgcfg_lib_PCRE2_pcre2-8", "GTest_DIR", "fmt_DIR", "spdlog_DIR",
                "yaml-cpp_DIR", "CLI11_DIR", "nlohmann_json_DIR", "MOELAB_MPIRUN"):
        value = cache_value(build, key)
        assert value and value.startswith(str(prefix)), f"{key} = {value}"
    # the fmt shim points at the prefix's Debian fmt (torch's own fmt must not win)
    assert os.readlink(build / "fmt_shim" / "fmt") == str(prefix / "usr" / "include" / "fmt")
