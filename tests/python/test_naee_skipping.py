"""NAEE dynamic skipping: moelab calibrate --collect gate_ratios -> moelab set-skipping -> a model
whose forward skips a token's non-top-1 expert when its gate < beta x the top-1 gate. Checked
against numpy's median of the router's 2nd/1st probability (from the inputs transformers feeds
each MoE block) and against a hand-written MoE block with the rule, run inside transformers'
model in place of its own blocks."""
import functools
import json
import re

import h5py
import numpy as np
import pytest
import torch

from helpers import (SEQ_LEN, capture_moe_io, hf_model, input_error, moe_layers, moelab_forward, seeded_ids,
                     write_ids_json)

token_ids = functools.partial(seeded_ids, n=6, seed=21)  # this file's sequences (seed 21)


def skipping_block(mlp, beta, k, router_renorm, skip_renorm, counts):
    """The MoE block by hand: route, skip slots j >= 1 with p_j < beta * p_0, (re)normalise,
    then each kept (token, slot) row through its expert, token by token."""

    def forward(hidden):
        B, T, D = hidden.shape
        x = hidden.reshape(-1, D)
        probs = torch.softmax(torch.nn.functional.linear(x, mlp.gate.weight).float(), -1)
        w, top = torch.topk(probs, k, -1)
        skip = w < beta * w[:, :1]
        skip[:, 0] = False
        if skip_renorm:
            w = w.masked_fill(skip, 0)
        if router_renorm:
            w = w / w.sum(-1, keepdim=True)
        if not skip_renorm:
            w = w.masked_fill(skip, 0)
        w = w.to(x.dtype)
        gu, dn = mlp.experts.gate_up_proj, mlp.experts.down_proj
        F = dn.shape[2]
        out = torch.zeros_like(x)
        for t in range(x.shape[0]):
            for j in range(k):
                if skip[t, j]:
                    continue
                e = int(top[t, j])
                h = gu[e] @ x[t]
                out[t] += w[t, j] * (dn[e] @ (torch.nn.functional.silu(h[:F]) * h[F:]))
        counts.append((int(skip.sum()), skip.numel()))
        return out.reshape(B, T, D)

    return forward


@torch.no_grad()
def reference_logits(model_dir, ids, betas, skip_renorm):
    model = hf_model(model_dir)
    cfg = model.config
    counts = []
    for i in moe_layers(model):
        mlp = model.model.layers[i].mlp
        mlp.forward = skipping_block(mlp, betas[i], cfg.num_experts_per_tok, getattr(cfg, "norm_topk_prob", True),
                                     skip_renorm, counts)
    return model(input_ids=ids).logits, counts


def skipped_rows(log):
    m = re.search(r"(\d+) of (\d+) expert rows skipped", log)
    assert m, log
    return int(m.group(1)), int(m.group(2))


def test_beta_is_the_median_gate_ratio_and_the_forward_skips_as_the_rule_says(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "mixtral"
    cal = token_ids(n=8, seed=4)
    ids_json = write_ids_json(tmp_path / "cal.json", cal, torch.full((8,), SEQ_LEN))
    moelab("calibrate", model, "--data", ids_json, "--seq-len", SEQ_LEN, "--num-samples", 0, "--criteria", "EUF",
           "--collect", "gate_ratios", "--out", tmp_path / "s.h5")
    moelab("set-skipping", model, "--stats", tmp_path / "s.h5", "--out", tmp_path / "skip")
    cfg = json.loads((tmp_path / "skip" / "config.json").read_text())
    betas = cfg["moelab_skip_beta"]
    assert len(betas) == 3 and cfg["moelab_skip_renormalize"] is True
    # beta per layer = numpy's median over calibration tokens of p_2 / p_1, within the bin width.
    original = hf_model(model)
    io = capture_moe_io(original, cal)
    with h5py.File(tmp_path / "s.h5") as f:
        for i, got in io.items():
            with torch.no_grad():
                p = torch.softmax(got["x"] @ original.model.layers[i].mlp.gate.weight.T, -1)
            top2 = torch.topk(p, 2, -1).values.double()
            ratio = (top2[:, 1] / top2[:, 0]).numpy()
            hist = f[f"layer_{i:03d}/gate_ratio_hist_B"][:]
            assert hist.shape == (1000,) and hist.sum() == cal.numel()
            assert abs(betas[i] - np.median(ratio)) <= 1 / 1000, (i, betas[i], np.median(ratio))
            assert 0 < betas[i] < 1
    # The skipping model's forward equals the rule written by hand inside transformers' model.
    ids = token_ids()
    mine, log = moelab_forward(moelab, tmp_path / "skip", ids, tmp_path)
    ref, counts = reference_logits(tmp_path / "skip", ids, betas, True)
    assert (mine - ref).abs().max().item() <= 1e-4
    skipped, rows = skipped_rows(log)
    assert (skipped, rows) == (sum(c[0] for c in counts), sum(c[1] for c in counts))
    assert 0 < skipped < rows // 2  # the second expert of some tokens; never a top-1
    # Skipping changes the model: the unskipped logits differ.
    plain, _ = moelab_forward(moelab, model, ids, tmp_path)
    assert (plain - mine).abs().max().item() > 1e-3


@pytest.mark.parametrize("family,gates", [("mixtral", "keep"), ("qwen3", "renormalize")])
def test_forward_with_a_given_beta_equals_the_rule(family, gates, fixtures, moelab, tmp_path):
    model = fixtures / "models" / family
    moelab("set-skipping", model, "--beta", 0.6, "--gates", gates, "--out", tmp_path / "skip")
    cfg = json.loads((tmp_path / "skip" / "config.json").read_text())
    moe = set(moe_layers(hf_model(model)))
    assert cfg["moelab_skip_beta"] == [0.6 if l in moe else 0.0 for l in range(cfg["num_hidden_layers"])]
    ids = token_ids()
    mine, log = moelab_forward(moelab, tmp_path / "skip", ids, tmp_path)
    ref, counts = reference_logits(tmp_path / "skip", ids, cfg["moelab_skip_beta"], gates == "renormalize")
    assert (mine - ref).abs().max().item() <= 1e-4
    assert skipped_rows(log) == (sum(c[0] for c in counts), sum(c[1] for c in counts))
    # Expert parallelism: skipped rows stay out of the all-to-all too; same logits.
    two, _ = moelab_forward(moelab, tmp_path / "skip", ids, tmp_path, "--ranks", 2)
    assert (two - mine).abs().max().item() <= 1e-5


def test_beta_zero_reproduces_the_unskipped_logits_and_eval_reports_the_savings(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "mixtral"
    moelab("set-skipping", model, "--beta", 0, "--out", tmp_path / "zero")
    ids = token_ids()
    plain, _ = moelab_forward(moelab, model, ids, tmp_path)
    zero, _ = moelab_forward(moelab, tmp_path / "zero", ids, tmp_path)
    assert torch.equal(plain, zero)
    # eval --efficiency: the share of rows skipped and the expert FLOPs that really ran.
    moelab("set-skipping", model, "--beta", 0.5, "--out", tmp_path / "half")
    res = tmp_path / "r.jsonl"
    moelab("eval", tmp_path / "half", "--efficiency", "--bench-seq-len", 16, "--bench-repeats", 1, "--results", res)
    m = json.loads(res.read_text().splitlines()[-1])["metrics"]
    frac = m["expert_rows_skipped_fraction"]
    assert 0 < frac < 0.5
    np.testing.assert_allclose(m["expert_flops_per_token_with_skipping"], m["expert_flops_per_token"] * (1 - frac),
                               rtol=1e-9)
    moelab("eval", model, "--efficiency", "--bench-seq-len", 16, "--bench-repeats", 1, "--results", res)
    assert "expert_rows_skipped_fraction" not in json.loads(res.read_text().splitlines()[-1])["metrics"]


def test_bad_inputs_are_one_line_errors(fixtures, moelab, tmp_path):
    mixtral, qwen3 = fixtures / "models" / "mixtral", fixtures / "models" / "qwen3"
    cal = write_ids_json(tmp_path / "cal.json", token_ids(n=2), torch.full((2,), SEQ_LEN))
    moelab("calibrate", mixtral, "--data", cal, "--seq-len", SEQ_LEN, "--criteria", "EUF", "--out", tmp_path / "s.h5")
    moelab("calibrate", qwen3, "--data", cal, "--seq-len", SEQ_LEN, "--criteria", "EUF", "--collect", "gate_ratios",
           "--out", tmp_path / "q.h5")

    err = functools.partial(input_error, moelab)

    out = tmp_path / "x"
    for beta in (1.5, -0.1):
        assert "--beta" in err("set-skipping", mixtral, "--beta", beta, "--out", out)
    msg = err("set-skipping", mixtral, "--stats", tmp_path / "s.h5", "--out", out)
    assert '"gate_ratios"' in msg and "--collect gate_ratios" in msg, msg
    assert "different model" in err("set-skipping", mixtral, "--stats", tmp_path / "q.h5", "--out", out)
    assert "--stats" in err("set-skipping", mixtral, "--out", out)
    assert not out.exists()
    # A hand-edited config with a threshold out of range or a list of the wrong length.
    moelab("set-skipping", mixtral, "--beta", 0.5, "--out", tmp_path / "ok")
    cfg_path = tmp_path / "ok" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    for bad in ([0.5, 2.0, 0.5], [0.5]):
        cfg["moelab_skip_beta"] = bad
        cfg_path.write_text(json.dumps(cfg))
        assert "moelab_skip_beta" in err("inspect", tmp_path / "ok")
