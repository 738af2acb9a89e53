"""Commands that load a whole model refuse, before reading anything, when the planned
peak memory (schedulers/resource_plan.h) exceeds what the process may use (here
MOELAB_MEMORY_LIMIT; on machines the cgroup limit, Slurm's allocation or MemAvailable):
one `error:` line naming the planned figure, the limit and what would fit, a non-zero
exit within seconds, nothing written."""
import json
import os
import subprocess
import time

import pytest

# OLMoE-1B-7B's shape: ~6.9 B parameters, ~26 GiB in float32.
OLMOE_7B = dict(hidden_size=2048, intermediate_size=1024, num_hidden_layers=16, num_experts=64,
                num_experts_per_tok=8, num_attention_heads=16, num_key_value_heads=16, vocab_size=50304)


@pytest.fixture
def big_model(fixtures, tmp_path):
    """A config.json alone: the check needs no weights (it comes before they are read)."""
    model = tmp_path / "olmoe-7b"
    model.mkdir()
    config = json.loads((fixtures / "models" / "olmoe" / "config.json").read_text())
    config.update(OLMOE_7B)
    config.pop("head_dim", None)
    (model / "config.json").write_text(json.dumps(config))
    return model


def inputs(tmp_path):
    ids = tmp_path / "ids.json"
    ids.write_text(json.dumps({"input_ids": [[1, 2, 3, 4, 5, 6, 7, 8]] * 4}))
    text = tmp_path / "text.txt"
    text.write_text("some text to evaluate\n")
    stats = tmp_path / "s.h5"
    stats.write_bytes(b"")
    return ids, text, stats


COMMANDS = {
    "forward": lambda m, ids, text, stats, out: ["forward", m, "--ids-json", ids, "--out", out],
    "eval": lambda m, ids, text, stats, out: ["eval", m, "--data", text, "--results", out],
    "calibrate": lambda m, ids, text, stats, out: ["calibrate", m, "--data", ids, "--seq-len", 8, "--out", out],
    "merge --in-memory": lambda m, ids, text, stats, out: ["merge", m, "--stats", stats, "--ratio", 0.5, "--in-memory",
                                                           "--out", out],
    "compress --in-memory": lambda m, ids, text, stats, out: ["compress", m, "--main", 1, "--in-memory", "--out", out],
    "finetune": lambda m, ids, text, stats, out: ["finetune", m, "--data", ids, "--seq-len", 8, "--steps", 1,
                                                  "--batch-size", 4, "--out", out],
    "prune --in-memory": lambda m, ids, text, stats, out: ["prune", m, "--drop", "0:1", "--in-memory", "--out", out],
}


def run(moelab_bin, args, limit="2G"):
    env = dict(os.environ, MOELAB_MEMORY_LIMIT=limit)
    start = time.monotonic()
    r = subprocess.run([moelab_bin, *map(str, args)], capture_output=True, text=True, timeout=120, env=env)
    return r, time.monotonic() - start


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_model_that_cannot_fit_is_refused_before_loading(command, big_model, moelab_bin, tmp_path):
    out = tmp_path / "out"
    args = COMMANDS[command](big_model, *inputs(tmp_path), out)
    r, seconds = run(moelab_bin, args)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: moelab " + command.split()[0] + ": "), r.stderr
    assert "planned peak memory is" in lines[0] and "2.00 GiB" in lines[0] and "MOELAB_MEMORY_LIMIT" in lines[0]
    if command == "calibrate":
        assert "--layerwise needs" in lines[0]
    assert seconds < 10
    assert not out.exists() and not list(tmp_path.glob("out*"))


def test_no_memory_check_goes_on_to_load(big_model, moelab_bin, tmp_path):
    ids, *_ = inputs(tmp_path)
    r, _ = run(moelab_bin, ["forward", big_model, "--ids-json", ids, "--out", tmp_path / "o", "--no-memory-check"])
    assert r.returncode != 0 and "planned peak" not in r.stderr
    assert "model.safetensors" in r.stderr  # it went on to read the (absent) weights


def test_a_model_that_fits_runs(fixtures, moelab_bin, tmp_path):
    ids, *_ = inputs(tmp_path)
    r, _ = run(moelab_bin, ["forward", fixtures / "models" / "mixtral", "--ids-json", ids, "--out", tmp_path / "o"])
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o").exists()
