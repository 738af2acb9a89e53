"""Expert merging (HC-SMoE / M-SMoE): moelab calibrate --collect dense_outputs -> moelab merge
-> merged checkpoint. Checked against independent references: the dense outputs recomputed from
the inputs transformers feeds each MoE block, a naive Python average-linkage clustering of the
file's mean outputs, numpy frequency-weighted averages of the original weights, and transformers'
own logits of the merged checkpoint; then the statistics across rank counts and the bad inputs."""
import functools
import json

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

import helpers
from helpers import assert_transformers_matches_moelab, capture_moe_io, expert_outputs, hf_model, input_error

# This file's calibration: 8 windows (seed 11) in batches of 3, the EUF criterion.
token_file = functools.partial(helpers.token_file, n=8, seed=11)
calibrate = functools.partial(helpers.calibrate, options=("--batch-size", 3, "--criteria", "EUF"))


def naive_average_linkage(mean_ED, num_groups):
    """Agglomerative clustering, average linkage on 1 - cosine, recomputed from scratch each step;
    ties -> the pair with the smallest ids (groups ordered by their smallest member)."""
    x = np.asarray(mean_ED, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1)
    dist = 1 - (x @ x.T) / np.outer(norms, norms)
    groups = [[e] for e in range(len(x))]
    while len(groups) > num_groups:
        best = None
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                d = np.mean([dist[i, j] for i in groups[a] for j in groups[b]])
                if best is None or d < best[0]:
                    best = (d, a, b)
        _, a, b = best
        groups[a] = sorted(groups[a] + groups[b])
        del groups[b]
    return groups


@pytest.mark.parametrize("family", ["mixtral", "qwen3"])
def test_merge_follows_the_statistics_and_loads_in_transformers(family, fixtures, moelab, tmp_path):
    model = fixtures / "models" / family
    data = token_file(tmp_path / "cal.json")
    calibrate(moelab, model, data, tmp_path / "s.h5", "--collect", "dense_outputs")
    out, plan_path = tmp_path / "merged", tmp_path / "merge.json"
    moelab("merge", model, "--stats", tmp_path / "s.h5", "--ratio", 0.5, "--plan-out", plan_path, "--out", out)
    plan = json.loads(plan_path.read_text())
    assert (plan["merge_plan_version"], plan["ratio"], plan["router_merge"]) == (1, 0.5, "avg")

    original = hf_model(model)
    merged = hf_model(out)
    ids = torch.tensor(json.loads(data.read_text())["input_ids"])
    io = capture_moe_io(original, ids)
    with h5py.File(tmp_path / "s.h5") as f:
        assert "dense_outputs" in f.attrs["collected"].decode()
        n_tokens = int(f.attrs["num_tokens"])
        assert n_tokens == ids.numel()
        assert sorted(int(l) for l in plan["layers"]) == sorted(io)
        for layer, body in plan["layers"].items():
            g = f[f"layer_{int(layer):03d}"]
            dense = g["dense_out_sum_ED"][:]
            tokens = g["tokens_E"][:].astype(float)
            E = len(tokens)
            # The statistic: every expert's output summed over ALL tokens (transformers' MoE inputs).
            with torch.no_grad():
                want = expert_outputs(io[int(layer)]["x"].double(), original.model.layers[int(layer)].mlp).sum(0)
            np.testing.assert_allclose(dense, want.numpy(), rtol=1e-5, atol=1e-5 * np.abs(want.numpy()).max())
            # Groups: a naive average-linkage clustering of the file's mean outputs.
            keep = E - int(np.floor(0.5 * E + 0.5))
            assert body["num_experts"] == E
            assert body["groups"] == naive_average_linkage(dense / n_tokens, keep)
            assert sorted(e for grp in body["groups"] for e in grp) == list(range(E))
            # Weights: usage frequency within the group; dominant: the most used member.
            for grp, w, dom in zip(body["groups"], body["weights"], body["dominant"]):
                t = tokens[grp]
                np.testing.assert_allclose(w, t / t.sum() if t.sum() > 0 else np.full(len(grp), 1 / len(grp)))
                assert dom == grp[int(np.argmax(t))]
            # Merged weights: numpy frequency-weighted averages of the original experts' weights.
            src, dst = original.model.layers[int(layer)].mlp, merged.model.layers[int(layer)].mlp
            for new, (grp, w) in enumerate(zip(body["groups"], body["weights"])):
                w = torch.tensor(w, dtype=torch.float64)[:, None, None]
                for name in ("gate_up_proj", "down_proj"):
                    ref = (getattr(src.experts, name).detach().double()[grp] * w).sum(0)
                    got = getattr(dst.experts, name).detach().double()[new]
                    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-6, atol=1e-7)
                ref_row = (src.gate.weight.detach().double()[grp] * w[:, :, 0]).sum(0)
                np.testing.assert_allclose(dst.gate.weight.detach().double()[new].numpy(), ref_row.numpy(),
                                           rtol=1e-6, atol=1e-7)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["num_local_experts"] == len(next(iter(plan["layers"].values()))["groups"])
    assert "auto_map" not in cfg  # uniform: the stock class loads it
    # transformers' logits of the merged checkpoint equal moelab's own.
    assert_transformers_matches_moelab(moelab, fixtures, family, out, tmp_path)


def test_dominant_router_rows_and_reapplied_plans(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "mixtral"
    calibrate(moelab, model, token_file(tmp_path / "cal.json"), tmp_path / "s.h5", "--collect", "dense_outputs")
    moelab("merge", model, "--stats", tmp_path / "s.h5", "--ratio", 0.25, "--plan-out", tmp_path / "m.json", "--out",
           tmp_path / "avg")
    plan = json.loads((tmp_path / "m.json").read_text())
    assert all(len(b["groups"]) == 6 for b in plan["layers"].values())  # 8 - round(0.25 * 8)
    # The saved plan re-applied gives the same checkpoint; --router-merge dominant keeps, per
    # group, the most used member's router row and the same expert weights.
    moelab("merge", model, "--plan", tmp_path / "m.json", "--out", tmp_path / "again")
    moelab("merge", model, "--plan", tmp_path / "m.json", "--router-merge", "dominant", "--out", tmp_path / "dom")
    a, b = load_file(str(tmp_path / "avg" / "model.safetensors")), load_file(str(tmp_path / "again" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    original = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    dom = AutoModelForCausalLM.from_pretrained(tmp_path / "dom", dtype=torch.float32)
    avg = AutoModelForCausalLM.from_pretrained(tmp_path / "avg", dtype=torch.float32)
    for layer, body in plan["layers"].items():
        l = int(layer)
        want = original.model.layers[l].mlp.gate.weight[body["dominant"]]
        assert torch.equal(dom.model.layers[l].mlp.gate.weight, want)
        assert torch.equal(dom.model.layers[l].mlp.experts.down_proj, avg.model.layers[l].mlp.experts.down_proj)
    assert_transformers_matches_moelab(moelab, fixtures, "mixtral", tmp_path / "dom", tmp_path)


def test_dense_outputs_do_not_depend_on_the_rank_count(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "qwen3"  # 10 experts over 2 ranks, and a dense layer
    data = token_file(tmp_path / "cal.json", n=7)  # 3 batches of 3: a rank idle in the last step
    calibrate(moelab, model, data, tmp_path / "p1.h5", "--collect", "dense_outputs")
    calibrate(moelab, model, data, tmp_path / "p2.h5", "--collect", "dense_outputs", ranks=2)
    with h5py.File(tmp_path / "p1.h5") as a, h5py.File(tmp_path / "p2.h5") as b:
        assert b.attrs["world_size"] == 2
        for g in a:
            want = a[g]["dense_out_sum_ED"][:]
            np.testing.assert_allclose(b[g]["dense_out_sum_ED"][:], want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
            assert np.array_equal(a[g]["tokens_E"][:], b[g]["tokens_E"][:])


def test_bad_inputs_are_one_line_errors(fixtures, moelab, tmp_path):
    mixtral, qwen3 = fixtures / "models" / "mixtral", fixtures / "models" / "qwen3"
    data = token_file(tmp_path / "cal.json", n=3)
    calibrate(moelab, mixtral, data, tmp_path / "plain.h5")
    calibrate(moelab, mixtral, data, tmp_path / "dense.h5", "--collect", "dense_outputs")
    calibrate(moelab, qwen3, data, tmp_path / "qwen.h5", "--collect", "dense_outputs")

    err = functools.partial(input_error, moelab)

    out = tmp_path / "x"
    for ratio in (1.0, -0.1):
        assert "--ratio" in err("merge", mixtral, "--stats", tmp_path / "dense.h5", "--ratio", ratio, "--out", out)
    assert "fewer than top-k" in err("merge", mixtral, "--stats", tmp_path / "dense.h5", "--ratio", 0.9, "--out", out)
    msg = err("merge", mixtral, "--stats", tmp_path / "plain.h5", "--out", out)
    assert '"dense_outputs"' in msg and "--collect dense_outputs" in msg, msg
    # A file without usage (its "collected" attribute edited): says how to collect it too.
    import shutil
    shutil.copy(tmp_path / "dense.h5", tmp_path / "nousage.h5")
    with h5py.File(tmp_path / "nousage.h5", "r+") as f:
        f.attrs["collected"] = np.bytes_("dense_outputs")
    msg = err("merge", mixtral, "--stats", tmp_path / "nousage.h5", "--out", out)
    assert '"usage"' in msg and "--collect usage" in msg, msg
    assert "different model" in err("merge", mixtral, "--stats", tmp_path / "qwen.h5", "--out", out)
    moelab("merge", qwen3, "--stats", tmp_path / "qwen.h5", "--plan-out", tmp_path / "q.json")
    assert "different model" in err("merge", mixtral, "--plan", tmp_path / "q.json", "--out", out)
    assert "exactly one" in err("merge", mixtral, "--out", out)
    assert not out.exists() and not list(tmp_path.glob("x.tmp*"))
