"""Gradient criteria (EGN, EGS, EGE, EGO), EASY-EP and NAEE: moelab calibrate -> HDF5 ->
moelab score, checked against independent references computed here with transformers
(autograd for the expert gradients, forward hooks for hidden states) and plain Python
loops over subsets for NAEE; then the same across rank counts."""
import functools
import itertools
import json

import h5py
import numpy as np
import pytest
import torch

import helpers
from helpers import capture_moe_io, expert_outputs, hf_model, input_error, moe_layers

# This file's calibration data and settings: 9 windows (seed 5), batches of 4.
token_file = functools.partial(helpers.token_file, n=9, seed=5)
calibrate = functools.partial(helpers.calibrate, options=("--batch-size", 4))


def score(moelab, stats, out, criteria):
    moelab("score", "--stats", stats, "--criteria", criteria, "--out", out)
    return json.loads(out.read_text())["criteria"]


# ---- references ----------------------------------------------------------------------------------

@torch.enable_grad()
def reference_gradient_scores(model_dir, ids):
    """G_j = d(mean next-token NLL)/d(expert j's gate_up and down), by transformers' autograd."""
    model = hf_model(model_dir)
    for p in model.parameters():
        p.requires_grad_(False)
    layers = moe_layers(model)
    for i in layers:
        model.model.layers[i].mlp.experts.gate_up_proj.requires_grad_(True)
        model.model.layers[i].mlp.experts.down_proj.requires_grad_(True)
    logits = model(input_ids=ids).logits
    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    nll = -logp.gather(-1, ids[:, 1:, None]).sum()
    (nll / ids[:, 1:].numel()).backward()
    out = {}
    for i in layers:
        ex = model.model.layers[i].mlp.experts
        gu, dn = ex.gate_up_proj.grad.double(), ex.down_proj.grad.double()  # [E, 2F, D], [E, D, F]
        E, F = gu.shape[0], gu.shape[1] // 2
        # Channel c: gate row c, up row c, down column c.
        v = torch.cat([gu[:, :F], gu[:, F:], dn.transpose(1, 2)], 2)  # [E, F, 3D]
        flat = v.reshape(E, -1)
        norms = flat.norm(dim=1)
        egs = np.zeros(E)
        for j in range(E):
            for k in range(E):
                if j != k and norms[j] > 0 and norms[k] > 0:
                    egs[j] += float(flat[j] @ flat[k] / (norms[j] * norms[k]))
        mean = v.mean(2, keepdim=True)
        std = ((v ** 2).mean(2, keepdim=True) - mean ** 2).clamp_min(0).sqrt()
        out[i] = {
            "EGN": norms.numpy(),
            "EGS": egs,
            "EGE": std.clamp_min(1e-12).log().sum((1, 2)).numpy(),
            "EGO": ((v - mean).abs() > 3 * std).sum((1, 2)).double().numpy(),
        }
    return out


def routed(x, mlp, k, renorm, keep=None):
    """Per token: top-k ids and gates, and every expert's output f_j(x); `keep` masks the
    router (dropped experts' logits -inf) as NAEE does."""
    logits = x @ mlp.gate.weight.double().T
    if keep is not None:
        logits = logits.masked_fill(~keep, float("-inf"))
    probs = torch.softmax(logits, -1)
    w, top = torch.topk(probs, min(k, int(keep.sum()) if keep is not None else k), -1)
    if renorm:
        w = w / w.sum(-1, keepdim=True)
    return w, top


def reference_easyep(model_dir, ids):
    model = hf_model(model_dir)
    cfg = model.config
    out = {}
    with torch.no_grad():
        for i, io in capture_moe_io(model, ids).items():
            mlp = model.model.layers[i].mlp
            x = io["x"].double()
            w, top = routed(x, mlp, cfg.num_experts_per_tok, getattr(cfg, "norm_topk_prob", True))
            f = expert_outputs(x, mlp)
            # EASYEP: cosine between the residual before and after the routed output (float64:
            # in float32 the rounding of cos is of the order of 1 - cos itself).
            h_in, y = io["h_in"].double(), io["y"].double()
            weight = (1 - torch.nn.functional.cosine_similarity(h_in, h_in + y, dim=-1)).clamp_min(0)
            s = np.zeros(f.shape[1])
            for t in range(x.shape[0]):
                for j in range(top.shape[1]):
                    e = int(top[t, j])
                    s[e] += float(w[t, j]) * float(f[t, e].norm()) * float(weight[t])
            out[i] = s
    return out


def naee_errors(model_dir, ids, keep_size):
    """Every subset of `keep_size` experts -> sum over tokens of ||Z - Z_S||^2 (float64)."""
    model = hf_model(model_dir)
    cfg = model.config
    k, renorm = cfg.num_experts_per_tok, getattr(cfg, "norm_topk_prob", True)
    out = {}
    with torch.no_grad():
        for i, io in capture_moe_io(model, ids).items():
            mlp = model.model.layers[i].mlp
            x = io["x"].double()
            f = expert_outputs(x, mlp)
            E = f.shape[1]

            def output(keep):
                w, top = routed(x, mlp, k, renorm, keep)
                return (f.gather(1, top[..., None].expand(-1, -1, f.shape[2])) * w[..., None]).sum(1)

            z = output(None)
            errs = {}
            for subset in itertools.combinations(range(E), keep_size):
                mask = torch.zeros(E, dtype=torch.bool)
                mask[list(subset)] = True
                errs[subset] = float(((z - output(mask)) ** 2).sum())
            out[i] = errs
    return out


# ---- tests ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["mixtral", "qwen3"])
def test_gradient_criteria_equal_transformers_autograd(family, fixtures, moelab, tmp_path):
    model = fixtures / "models" / family
    data = token_file(tmp_path / "cal.json")
    calibrate(moelab, model, data, tmp_path / "g.h5", "--criteria", "EGN,EGS,EGE,EGO")
    got = score(moelab, tmp_path / "g.h5", tmp_path / "g.json", "EGN,EGS,EGE,EGO")
    ids = torch.tensor(json.loads(data.read_text())["input_ids"])
    ref = reference_gradient_scores(model, ids)
    for i, crits in ref.items():
        for name, want in crits.items():
            have = np.array(got[name]["layers"][str(i)])
            if name == "EGO":  # a value within rounding of mean +- 3 std may fall either side
                np.testing.assert_allclose(have, want, atol=2, err_msg=f"{family} layer {i} {name}")
            else:  # EGS sums cosines of either sign: tolerance relative to the layer's scale
                np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-5 * np.abs(want).max(),
                                           err_msg=f"{family} layer {i} {name}")
        # Not a degenerate check: the experts' gradients differ.
        assert np.ptp(crits["EGN"]) > 0


@pytest.mark.parametrize("family", ["mixtral", "qwen3"])
def test_easy_ep_equals_a_recomputation_from_transformers_hidden_states(family, fixtures, moelab, tmp_path):
    model = fixtures / "models" / family
    data = token_file(tmp_path / "cal.json")
    calibrate(moelab, model, data, tmp_path / "e.h5", "--criteria", "EASY-EP")
    got = score(moelab, tmp_path / "e.h5", tmp_path / "e.json", "EASY-EP")["EASY-EP"]["layers"]
    ref = reference_easyep(model, torch.tensor(json.loads(data.read_text())["input_ids"]))
    for i, want in ref.items():
        assert np.all(want > 0)
        np.testing.assert_allclose(got[str(i)], want, rtol=1e-5, err_msg=f"{family} layer {i}")


@pytest.mark.parametrize("family", ["mixtral", "qwen3"])
def test_naee_enumeration_finds_the_subset_with_the_smallest_reconstruction_error(family, fixtures, moelab,
                                                                                   tmp_path):
    model = fixtures / "models" / family
    data = token_file(tmp_path / "cal.json")
    calibrate(moelab, model, data, tmp_path / "n.h5", "--criteria", "NAEE", "--naee-ratio", 0.5)
    got = score(moelab, tmp_path / "n.h5", tmp_path / "n.json", "NAEE")["NAEE"]["layers"]
    with h5py.File(tmp_path / "n.h5") as f:
        E = f["layer_000/naee_subsets_SE"].shape[1]
        ref = naee_errors(model, torch.tensor(json.loads(data.read_text())["input_ids"]), E // 2)
        for i, errs in ref.items():
            g = f[f"layer_{i:03d}"]
            subsets, loss = g["naee_subsets_SE"][:].astype(bool), g["naee_loss_S"][:]
            assert len(subsets) == len(errs)  # every subset of E/2 experts was tried
            for row, value in zip(subsets, loss):
                want = errs[tuple(np.flatnonzero(row))]
                np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-9, err_msg=f"{family} layer {i}")
            best = min(errs, key=errs.get)
            dropped = sorted(set(range(E)) - set(best))
            # Min-NAEE drops exactly NAEE's subset: the E/2 lowest scores are its dropped experts.
            assert sorted(np.argsort(got[str(i)], kind="stable")[: E - E // 2].tolist()) == dropped


def test_naee_falls_back_to_greedy_elimination_above_the_budget(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "mixtral"
    data = token_file(tmp_path / "cal.json")
    calibrate(moelab, model, data, tmp_path / "n.h5", "--criteria", "NAEE", "--naee-ratio", 0.25, "--naee-budget",
              10)  # C(8, 6) = 28 > 10
    ids = torch.tensor(json.loads(data.read_text())["input_ids"])
    loaded = hf_model(model)
    cfg = loaded.config
    with h5py.File(tmp_path / "n.h5") as f, torch.no_grad():
        for i, io in capture_moe_io(loaded, ids).items():
            mlp = loaded.model.layers[i].mlp
            x = io["x"].double()
            fo = expert_outputs(x, mlp)

            def output(keep):
                w, top = routed(x, mlp, cfg.num_experts_per_tok, True, keep)
                return (fo.gather(1, top[..., None].expand(-1, -1, fo.shape[2])) * w[..., None]).sum(1)

            z = output(None)
            current = torch.ones(8, dtype=torch.bool)
            path, losses = [], []
            for _ in range(2):  # 25% of 8 experts: two eliminations, each the cheapest
                trials = []
                for e in torch.nonzero(current).view(-1).tolist():
                    m = current.clone()
                    m[e] = False
                    trials.append((float(((z - output(m)) ** 2).sum()), m))
                loss, current = min(trials, key=lambda t: t[0])
                path.append(current.numpy())
                losses.append(loss)
            g = f[f"layer_{i:03d}"]
            assert np.array_equal(g["naee_subsets_SE"][:].astype(bool), np.stack(path))
            np.testing.assert_allclose(g["naee_loss_S"][:], losses, rtol=1e-5)


@pytest.mark.parametrize("ranks", [2, 4])
def test_gradient_easyep_naee_scores_do_not_depend_on_the_rank_count(ranks, fixtures, moelab, tmp_path):
    model = fixtures / "models" / "qwen3"  # 10 experts: uneven placement over 4 ranks
    data = token_file(tmp_path / "cal.json", n=11)  # 3 batches: some ranks idle in a step
    crits = "EGN,EGS,EGE,EGO,EASY-EP,NAEE"
    calibrate(moelab, model, data, tmp_path / "p1.h5", "--criteria", crits)
    calibrate(moelab, model, data, tmp_path / "pn.h5", "--criteria", crits, ranks=ranks)
    a = score(moelab, tmp_path / "p1.h5", tmp_path / "p1.json", crits)
    b = score(moelab, tmp_path / "pn.h5", tmp_path / "pn.json", crits)
    for crit, body in a.items():
        for layer, vals in body["layers"].items():
            vals, other = np.array(vals), np.array(b[crit]["layers"][layer])
            if crit == "EGO":
                np.testing.assert_allclose(other, vals, atol=2, err_msg=f"{crit} layer {layer}")
                continue
            np.testing.assert_allclose(other, vals, rtol=1e-5, atol=1e-5 * np.abs(vals).max(),
                                       err_msg=f"{crit} layer {layer}")
            if crit != "EGS":  # EGS values near zero may swap places within rounding
                assert list(np.argsort(other, kind="stable")) == list(np.argsort(vals, kind="stable")), crit


def test_missing_statistics_and_bad_options_are_one_line_errors(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "mixtral"
    data = token_file(tmp_path / "cal.json")
    calibrate(moelab, model, data, tmp_path / "s.h5", "--criteria", "EUF")

    err = functools.partial(input_error, moelab)

    for crit, group in (("EGE", "gradients"), ("EASY-EP", "hidden_change"), ("NAEE", "naee")):
        msg = err("score", "--stats", tmp_path / "s.h5", "--criteria", crit, "--out", tmp_path / "x.json")
        assert f'lacks "{group}"' in msg and f"--criteria {crit}" in msg, msg
    assert 'did you mean "EGE"' in err("score", "--stats", tmp_path / "s.h5", "--criteria", "EGEE", "--out",
                                      tmp_path / "x.json")
    assert "--naee-ratio" in err("calibrate", model, "--data", data, "--criteria", "NAEE", "--naee-ratio", 1.5,
                                 "--out", tmp_path / "y.h5")
    one_token = tmp_path / "one.json"
    one_token.write_text(json.dumps({"input_ids": [[5], [7]]}))
    assert "at least 2 tokens" in err("calibrate", model, "--data", one_token, "--criteria", "EGN", "--out",
                                      tmp_path / "y.h5")
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "y.h5").exists()
