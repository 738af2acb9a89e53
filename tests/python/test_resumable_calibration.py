"""Resumable calibration (calibrate --checkpoint-every): kill -9 at several points, run the
same command again each time, and the statistics file equals that of an uninterrupted run,
bit for bit (every dataset and attribute, read with h5py); under 1 and 2 ranks, for the
whole-model pass (a step: one batch on every rank) and the layer-by-layer pass (a step: one
decoder layer, with the hidden states in memory or in a scratch file)."""
import json
import os
import pathlib
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest

from helpers import one_line_error

# Every group whose state is a running sum of one pass (the others are refused).
GROUPS = "usage,act_norms,out_norms,coactivation,token_ids,act_moments,hidden_change,power_sums,gate_ratios,dense_outputs"
N_SEQ, SEQ_LEN, BATCH = 48, 32, 2
LAYERS = 12
# The model's largest layer holds 1.8 MiB of weights; its hidden states take 576 KiB, more
# than half of what that layer leaves of 2 MiB, so they go to a scratch file.
SCRATCH_BUDGET = "2M"
MODES = {"whole": [], "layerwise": ["--layerwise"],
         "layerwise-scratch": ["--layerwise", "--memory-budget", SCRATCH_BUDGET]}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A random Mixtral with enough layers that a step takes a few milliseconds."""
    import torch
    from transformers import MixtralConfig, MixtralForCausalLM
    torch.manual_seed(0)
    cfg = MixtralConfig(vocab_size=512, hidden_size=96, intermediate_size=192, num_hidden_layers=LAYERS,
                        num_attention_heads=4, num_key_value_heads=2, num_local_experts=8, num_experts_per_tok=2,
                        max_position_embeddings=256)
    path = tmp_path_factory.mktemp("resumable") / "mixtral"
    MixtralForCausalLM(cfg).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def data(model):
    rng = np.random.default_rng(5)
    path = model.parent / "cal.json"
    path.write_text(json.dumps({"input_ids": rng.integers(1, 512, size=(N_SEQ, SEQ_LEN)).tolist()}))
    return path


def args(model, data, out, ranks, *extra):
    return [*(["--ranks", ranks] if ranks > 1 else []), "calibrate", model, "--data", data, "--seq-len", SEQ_LEN,
            "--num-samples", 0, "--batch-size", BATCH, "--criteria", "EAN", "--collect", GROUPS, "--out", out,
            *extra]


def assert_same_file(got, want):
    with h5py.File(got) as a, h5py.File(want) as b:
        assert dict(a.attrs).keys() == dict(b.attrs).keys()
        for k in b.attrs:
            assert np.array_equal(np.asarray(a.attrs[k]), np.asarray(b.attrs[k])), k
        names = []
        b.visit(names.append)
        got_names = []
        a.visit(got_names.append)
        assert sorted(got_names) == sorted(names)
        for n in names:
            if isinstance(b[n], h5py.Dataset):
                assert a[n].dtype == b[n].dtype, n
                assert np.array_equal(a[n][()], b[n][()]), n  # bit for bit, not within a tolerance


def steps_done(ckpt):
    try:
        return json.loads((ckpt / "checkpoint.json").read_text())["steps_done"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def kill_after(cmd, ckpt, step, timeout=300):
    """Starts cmd in its own session and SIGKILLs the whole session once the checkpoint covers
    `step` steps; returns the steps the checkpoint covers after the kill."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    while steps_done(ckpt) < step:
        if proc.poll() is not None:
            pytest.fail(f"calibrate ended (rc {proc.returncode}) before step {step}: {proc.stderr.read()[-2000:]}")
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.002)
    # Every process of the session: mpirun puts its ranks in process groups of their own.
    subprocess.run(["pkill", "-KILL", "-s", str(proc.pid)], check=False)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    for _ in range(500):  # the ranks are gone too
        if subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True).returncode != 0:
            break
        time.sleep(0.01)
    else:
        pytest.fail("processes of the killed calibration are still running")
    return steps_done(ckpt)


@pytest.mark.parametrize("ranks,mode", [(1, "whole"), (2, "whole"), (1, "layerwise"), (2, "layerwise"),
                                        (1, "layerwise-scratch")])
def test_killed_three_times_then_resumed_equals_an_uninterrupted_run(ranks, mode, moelab, moelab_bin, model, data,
                                                                    tmp_path):
    # The reference is the uninterrupted whole-model pass in every mode: the layer-by-layer
    # pass gives the same file, bit for bit.
    want = tmp_path / "uninterrupted.h5"
    moelab(*args(model, data, want, ranks))
    out, ckpt = tmp_path / "s.h5", tmp_path / "s.h5.ckpt"
    extra = [*MODES[mode], "--checkpoint-every", 1]
    # Steps: one batch on every rank, or one layer.
    total = LAYERS if mode != "whole" else -(-N_SEQ // BATCH) // ranks
    rng = np.random.default_rng(ranks + 10 * len(mode))
    points = sorted(rng.choice(np.arange(2, total - 2), size=3, replace=False))
    cmd = [moelab_bin, *map(str, args(model, data, out, ranks, *extra))]
    last = 0
    for k in points:
        reached = kill_after(cmd, ckpt, max(int(k), last + 1))
        assert reached >= last + 1 and not out.exists()  # nothing written half
        last = reached
    proc = moelab(*args(model, data, out, ranks, *extra))
    unit = "step" if mode == "whole" else "layer"
    assert f"resuming calibration after {unit} {last} " in proc.stderr
    if mode == "layerwise-scratch":
        assert "hidden states 0.6 MiB in a scratch file" in proc.stderr, proc.stderr
    assert_same_file(out, want)
    assert not ckpt.exists()  # removed once the output is written


def test_checkpointing_every_few_steps_changes_nothing(moelab, model, data, tmp_path):
    moelab(*args(model, data, tmp_path / "a.h5", 1))
    moelab(*args(model, data, tmp_path / "b.h5", 1, "--checkpoint-every", 3, "--checkpoint-dir", tmp_path / "ck"))
    assert_same_file(tmp_path / "b.h5", tmp_path / "a.h5")
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize("ranks,mode", [(1, "whole"), (2, "whole"), (2, "layerwise")])
def test_usr1_stops_at_the_next_step_saves_and_exits_75_then_resumes(ranks, mode, moelab, moelab_bin, model,
                                                                    tmp_path):
    """Slurm's "time is nearly up" (USR1, forwarded by mpirun to every rank): the ranks agree on
    the next step, save there although no periodic checkpoint is due, and exit 75 (EX_TEMPFAIL);
    the same command then continues to the uninterrupted file."""
    rng = np.random.default_rng(7)
    data = tmp_path / "long.json"  # 320 sequences: several seconds, caught well inside the pass (progress: 1 s)
    data.write_text(json.dumps({"input_ids": rng.integers(1, 512, size=(320, SEQ_LEN)).tolist()}))
    want = tmp_path / "want.h5"
    moelab(*args(model, data, want, ranks))
    out, ckpt = tmp_path / "s.h5", tmp_path / "s.h5.ckpt"
    extra = [*MODES[mode], "--checkpoint-every", 100000]
    proc = subprocess.Popen([moelab_bin, *map(str, args(model, data, out, ranks, *extra))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    marker = "layer 2/" if mode == "layerwise" else "batch "  # in the pass, past its start
    seen = ""
    for line in proc.stderr:
        seen += line
        if marker in line:
            break
    os.kill(proc.pid, signal.SIGUSR1)  # moelab itself, or mpirun, which passes it on
    seen += proc.stderr.read()
    assert proc.wait(timeout=120) == 75, seen
    assert "stopped by a signal after" in seen and "run the same command again" in seen, seen
    reached = steps_done(ckpt)
    assert reached > 0 and not out.exists()
    done = moelab(*args(model, data, out, ranks, *extra))
    unit = "step" if mode == "whole" else "layer"
    assert f"resuming calibration after {unit} {reached} " in done.stderr
    assert_same_file(out, want)
    assert not ckpt.exists()


def test_a_checkpoint_of_other_arguments_or_rank_count_is_refused(moelab, moelab_bin, model, data, tmp_path):
    out, ckpt = tmp_path / "s.h5", tmp_path / "s.h5.ckpt"
    kill_after([moelab_bin, *map(str, args(model, data, out, 1, "--checkpoint-every", 1))], ckpt, 2)
    line = one_line_error(moelab(*args(model, data, out, 1, "--checkpoint-every", 1, "--power-exponents", "0,1"),
                                 check=False), prefix="")
    assert line.startswith(f"error: {ckpt}: holds a calibration checkpoint of other arguments"), line
    # Under mpirun every rank reports before the abort (and Open MPI adds its own lines).
    proc = moelab(*args(model, data, out, 2, "--checkpoint-every", 1), check=False)
    assert proc.returncode != 0
    assert f"{ckpt}: the checkpoint was written by 1 rank(s); resume with the same number (2 now)" in proc.stderr
    assert "calibrating on" not in proc.stderr  # refused before any work
    assert not out.exists()
    moelab(*args(model, data, out, 1, "--checkpoint-every", 1))  # the same arguments still resume


def test_a_whole_model_checkpoint_is_not_taken_for_a_layerwise_one(moelab, moelab_bin, model, data, tmp_path):
    out, ckpt = tmp_path / "s.h5", tmp_path / "s.h5.ckpt"
    kill_after([moelab_bin, *map(str, args(model, data, out, 1, "--checkpoint-every", 1))], ckpt, 2)
    line = one_line_error(moelab(*args(model, data, out, 1, "--layerwise", "--checkpoint-every", 1), check=False),
                          prefix="")
    assert line.startswith(f"error: {ckpt}: holds a calibration checkpoint of other arguments"), line
    # The memory budget is not part of it: a layerwise run resumes under another budget.
    out2, ckpt2 = tmp_path / "l.h5", tmp_path / "l.h5.ckpt"
    kill_after([moelab_bin, *map(str, args(model, data, out2, 1, "--layerwise", "--checkpoint-every", 2))], ckpt2, 4)
    proc = moelab(*args(model, data, out2, 1, "--layerwise", "--memory-budget", SCRATCH_BUDGET,
                        "--checkpoint-every", 2))
    assert "resuming calibration after layer" in proc.stderr and "in a scratch file" in proc.stderr
    moelab(*args(model, data, tmp_path / "w.h5", 1))
    assert_same_file(out2, tmp_path / "w.h5")


def test_groups_that_are_not_one_pass_sums_are_refused(moelab, model, data, tmp_path):
    for extra, want in [(["--collect", "gradients"], 'statistic group "gradients"'),
                        (["--criteria", "EAO"], 'statistic group "act_outliers"')]:
        line = one_line_error(moelab("calibrate", model, "--data", data, "--seq-len", SEQ_LEN, "--num-samples", 0,
                                     "--checkpoint-every", 1, *extra, "--out", tmp_path / "x.h5", check=False),
                              prefix="")
        assert line.startswith("error: --checkpoint-every: ") and want in line, line
    line = one_line_error(moelab("calibrate", model, "--data", data, "--checkpoint-dir", tmp_path, "--out",
                                 tmp_path / "x.h5", check=False), prefix="")
    assert "--checkpoint-dir" in line and "--checkpoint-every" in line, line
