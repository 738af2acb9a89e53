"""moelab calibrate --layerwise (one decoder layer at a time, under a memory budget):
the same HDF5 statistics and scores as the whole-model pass, on 1 and 2 ranks and two
families; the budget holds (peak RSS measured by the kernel for the child process);
bad budgets and whole-model groups are one-line errors."""
import functools
import json
import os
import pathlib
import re
import subprocess

import h5py
import numpy as np
import pytest
import torch
from safetensors import safe_open

import helpers
from helpers import SEQ_LEN

# Every forward-only group (act_outliers, gradients and naee need the whole model).
GROUPS = ("usage,act_norms,out_norms,coactivation,token_ids,act_moments,hidden_change,dense_outputs,gate_ratios,"
          "power_sums")
CRITERIA = "EUF,EAN,REAP,SoftFrequency,EASY-EP"
MIB = 2**20
token_file = functools.partial(helpers.token_file, n=9, seed=5)  # this file's calibration data


def calibrate_args(model, data, out, *extra, ranks=None, seq_len=SEQ_LEN):
    return ((["--ranks", ranks] if ranks else []) +
            ["calibrate", model, "--data", data, "--seq-len", seq_len, "--num-samples", 0, "--criteria", CRITERIA,
             "--collect", GROUPS, "--batch-size", 2, "--out", out, *extra])


def largest_layer_bytes(model_dir, ranks=1):
    """fp32 bytes of the largest decoder layer on one of `ranks` ranks (routed experts split
    evenly), from the safetensors headers."""
    sizes = {}
    for f in pathlib.Path(model_dir).glob("*.safetensors"):
        with safe_open(f, "pt") as st:
            for name in st.keys():
                m = re.match(r"model\.layers\.(\d+)\.", name)
                if m:
                    n = 4 * int(np.prod(st.get_slice(name).get_shape()))
                    sizes[int(m[1])] = sizes.get(int(m[1]), 0) + (n // ranks if ".mlp.experts." in name else n)
    return max(sizes.values())


def assert_same_file(a_path, b_path):
    """Every attribute and dataset of two statistics files, equal within 1e-6 relative."""
    with h5py.File(a_path) as a, h5py.File(b_path) as b:
        assert set(a.attrs) == set(b.attrs)
        for k in a.attrs:
            assert np.array_equal(np.asarray(a.attrs[k]), np.asarray(b.attrs[k])), k
        assert set(a) == set(b) and len(a) > 0
        for g in a:
            assert dict(a[g].attrs) == dict(b[g].attrs), g
            assert set(a[g]) == set(b[g]), g
            for d in a[g]:
                assert dict(a[g][d].attrs) == dict(b[g][d].attrs), f"{g}/{d}"
                want, got = a[g][d][:], b[g][d][:]
                assert want.dtype == got.dtype and want.shape == got.shape, f"{g}/{d}"
                if want.dtype.kind == "f":
                    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.abs(want).max(), err_msg=f"{g}/{d}")
                else:
                    assert np.array_equal(got, want), f"{g}/{d}"


@pytest.mark.parametrize("ranks", [None, 2])
# qwen2_moe: a shared expert and a dense layer; qwen3_next: Gated DeltaNet layers (their
# convolution and delta-rule state are per layer and per sequence)
@pytest.mark.parametrize("family", ["mixtral", "qwen2_moe", "qwen3_next"])
def test_layerwise_statistics_and_scores_equal_the_whole_model_pass(family, ranks, fixtures, moelab, tmp_path):
    model = fixtures / "models" / family
    data = token_file(tmp_path / "cal.json")
    moelab(*calibrate_args(model, data, tmp_path / "whole.h5", ranks=ranks))
    proc = moelab(*calibrate_args(model, data, tmp_path / "layers.h5", "--layerwise", "--memory-budget", "64M",
                                  ranks=ranks))
    assert "in memory" in proc.stderr and "peak resident memory" in proc.stderr
    assert re.search(r"layer \d+/\d+ batch \d+/\d+ \[[#.]+\] +\d+% \d+ tok/s ETA \d+:\d\d", proc.stderr)
    assert_same_file(tmp_path / "whole.h5", tmp_path / "layers.h5")
    with h5py.File(tmp_path / "layers.h5") as f:
        assert f.attrs["world_size"] == (ranks or 1)
    scores = {}
    for name in ("whole", "layers"):
        moelab("score", "--stats", tmp_path / f"{name}.h5", "--model", model, "--criteria", CRITERIA, "--out",
               tmp_path / f"{name}.json")
        scores[name] = json.loads((tmp_path / f"{name}.json").read_text())["criteria"]
    assert scores["whole"].keys() == scores["layers"].keys()
    for crit, body in scores["whole"].items():
        for layer, vals in body["layers"].items():
            np.testing.assert_allclose(scores["layers"][crit]["layers"][layer], vals, rtol=1e-6, err_msg=crit)


@pytest.mark.parametrize("ranks", [None, 2])
def test_hidden_states_that_do_not_fit_go_through_a_scratch_file(ranks, fixtures, moelab, tmp_path):
    model = fixtures / "models" / "qwen2_moe"
    data = token_file(tmp_path / "cal.json")
    # 9 sequences in batches of 2: rank 0 of 2 holds 5 (batches 0, 2, 4), rank 1 holds 4.
    state_bytes = (4 if ranks else 9) * SEQ_LEN * 64 * 4  # tokens x hidden x fp32
    # The states then take more than half of what the largest layer leaves of the budget.
    budget = largest_layer_bytes(model, ranks or 1) + state_bytes
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    moelab(*calibrate_args(model, data, tmp_path / "whole.h5", ranks=ranks))
    proc = moelab(*calibrate_args(model, data, tmp_path / "layers.h5", "--layerwise", "--memory-budget", budget,
                                  "--scratch-dir", scratch, ranks=ranks))
    assert "in a scratch file" in proc.stderr
    assert list(scratch.iterdir()) == []  # unlinked: nothing left behind
    assert_same_file(tmp_path / "whole.h5", tmp_path / "layers.h5")


def test_a_budget_below_one_layer_is_a_one_line_error_naming_the_layer(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "mixtral"
    data = token_file(tmp_path / "cal.json")
    need = largest_layer_bytes(model)
    proc = moelab(*calibrate_args(model, data, tmp_path / "s.h5", "--layerwise", "--memory-budget", "100K"),
                  check=False)
    assert proc.returncode != 0 and not (tmp_path / "s.h5").exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    m = re.fullmatch(r"error: --memory-budget: layer (\d+) needs ([\d.]+) MiB for its weights on this rank, "
                     r"more than the budget of 0\.1 MiB", lines[0])
    assert m, lines[0]
    assert abs(float(m[2]) * MIB - need) <= 0.05 * MIB


@pytest.mark.parametrize("extra, message", [
    (["--criteria", "EGE"], 'error: --layerwise: statistic group "gradients" needs a backward pass'),
    (["--criteria", "NAEE"], 'error: --layerwise: statistic group "naee"'),
    (["--collect", "act_outliers"], 'error: --layerwise: statistic group "act_outliers"'),
    (["--memory-budget", "12Q"], 'error: --memory-budget: "12Q" is not a size'),
    (["--memory-budget", "0"], 'error: --memory-budget: "0" must be a positive size'),
])
def test_bad_layerwise_inputs_are_one_line_errors(extra, message, fixtures, moelab, tmp_path):
    data = token_file(tmp_path / "cal.json")
    proc = moelab("calibrate", fixtures / "models" / "mixtral", "--data", data, "--seq-len", SEQ_LEN, "--layerwise",
                  "--out", tmp_path / "s.h5", *extra, check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr


def test_budget_without_layerwise_is_refused(fixtures, moelab, tmp_path):
    data = token_file(tmp_path / "cal.json")
    proc = moelab("calibrate", fixtures / "models" / "mixtral", "--data", data, "--memory-budget", "1G", "--out",
                  tmp_path / "s.h5", check=False)
    assert proc.returncode != 0 and "--layerwise" in proc.stderr


def make_big_mixtral(path):
    """A random Mixtral of about 165 MiB of fp32 weights in 80 layers of about 2 MiB: the
    budget must hold one layer (and libtorch's fixed costs), not the model."""
    from transformers import MixtralConfig, MixtralForCausalLM
    from transformers import logging as hf_logging
    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    cfg = MixtralConfig(vocab_size=256, hidden_size=128, intermediate_size=160, num_hidden_layers=80,
                        num_attention_heads=4, num_key_value_heads=2, num_local_experts=8, num_experts_per_tok=2,
                        max_position_embeddings=256, tie_word_embeddings=False)
    model = MixtralForCausalLM(cfg)
    model.save_pretrained(path)
    return sum(p.numel() for p in model.parameters()) * 4


def run_measured(moelab_bin, args, tmp_path):
    """Runs moelab under /usr/bin/time; returns (returncode, stderr, peak RSS in bytes).
    /usr/bin/time is a small process that forks moelab itself: the kernel's ru_maxrss of
    a child forked straight from pytest would start at pytest's own size."""
    rss = tmp_path / "rss.txt"
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss, moelab_bin, *map(str, args)],
                          capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stderr, int(rss.read_text().split()[-1]) * 1024


@pytest.mark.skipif(not pathlib.Path("/usr/bin/time").exists(), reason="needs /usr/bin/time")
def test_peak_memory_stays_under_a_budget_four_times_below_the_weights(moelab_bin, tmp_path):
    weights = make_big_mixtral(tmp_path / "big")
    budget = 40 * MIB  # what the run may add above the process's size at start (libtorch, ~120 MB)
    assert weights >= 4 * budget
    data = token_file(tmp_path / "cal.json", n=8, vocab=256, seq_len=32)
    common = ["calibrate", tmp_path / "big", "--data", data, "--seq-len", 32, "--num-samples", 0, "--criteria",
              "EAN,REAP", "--batch-size", 4]
    peaks = {}
    for mode, extra in [("whole", []), ("layers", ["--layerwise", "--memory-budget", "40M"])]:
        rc, err, peak = run_measured(moelab_bin, common + ["--out", tmp_path / f"{mode}.h5", *extra], tmp_path)
        assert rc == 0, err
        # The budget counts from the process's size when calibrate starts, which moelab logs.
        m = re.search(r"peak resident memory: ([\d.]+) MiB \(([-\d.]+) MiB above the ([\d.]+) MiB at start", err)
        assert m, err
        assert abs(float(m[1]) * MIB - peak) < 4 * MIB  # moelab's figure is the kernel's (less its exit)
        peaks[mode] = peak - float(m[3]) * MIB
    assert peaks["whole"] > weights > budget  # the whole model does not fit ...
    assert peaks["layers"] <= budget, f"{peaks['layers'] / MIB:.1f} MiB above the start"  # ... layer by layer does
    assert_same_file(tmp_path / "whole.h5", tmp_path / "layers.h5")
