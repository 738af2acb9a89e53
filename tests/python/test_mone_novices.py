"""MoNE's substitution (issue 27): `moelab prune --substitute novices` replaces each dropped
expert by its mean output over the calibration tokens routed to it; the router keeps every
row. Checked against a Python re-implementation of the substituted forward (transformers'
unpruned model whose experts module is replaced by a loop that gives a dropped expert's
tokens its mean output), on 1 and 2 ranks and in the layer-by-layer evaluation; the saved
model holds the kept experts and the novices; what cannot work is refused in one line."""
import functools
import json

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

import helpers
from helpers import SEQ_LEN, hf_logits, hf_model, mixtral_with_tokenizer, moelab_logits, write_ids_json

token_file = functools.partial(helpers.token_file, n=8, seed=6)  # this file's calibration data


def substituted(moelab, fixtures, tmp_path, family="mixtral", ratio=0.5):
    model = fixtures / "models" / family
    data = token_file(tmp_path / "cal.json")
    moelab("calibrate", model, "--data", data, "--seq-len", SEQ_LEN, "--num-samples", 0, "--criteria", "MoNE", "--out",
           tmp_path / "s.h5")
    moelab("score", "--stats", tmp_path / "s.h5", "--criteria", "MoNE", "--out", tmp_path / "scores.json")
    moelab("prune", model, "--scores", tmp_path / "scores.json", "--criterion", "MoNE", "--ratio", ratio,
           "--substitute", "novices", "--stats", tmp_path / "s.h5", "--plan-out", tmp_path / "plan.json", "--out",
           tmp_path / "mone")
    return model, tmp_path / "mone", json.loads((tmp_path / "plan.json").read_text())


def means(stats):
    """{layer: [E, D] float64}: out_sum_ED / tokens_E (0 where no token)."""
    out = {}
    with h5py.File(stats) as f:
        for l in f.attrs["moe_layers"].decode().split(","):
            g = f[f"layer_{int(l):03d}"]
            n = g["tokens_E"][:].astype(np.float64)[:, None]
            out[int(l)] = np.where(n > 0, g["out_sum_ED"][:] / np.maximum(n, 1), 0.0)
    return out


@torch.no_grad()
def reference_logits(model_dir, ref, plan, mean):
    """transformers' unpruned model, each MoE layer's experts replaced by the MoNE rule."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, experts_implementation="eager").eval()
    for idx, layer in enumerate(model.model.layers):
        if str(idx) not in plan["layers"]:
            continue
        experts = layer.mlp.experts
        dropped = set(plan["layers"][str(idx)]["drop"])
        novice = torch.tensor(mean[idx], dtype=torch.float32)

        def forward(hidden, top_k_index, top_k_weights, experts=experts, dropped=dropped, novice=novice):
            out = torch.zeros_like(hidden)
            F = experts.gate_up_proj.shape[1] // 2
            for t in range(hidden.shape[0]):
                for k in range(top_k_index.shape[1]):
                    e, w = int(top_k_index[t, k]), top_k_weights[t, k]
                    if e in dropped:
                        out[t] += w * novice[e]
                    else:
                        h = hidden[t] @ experts.gate_up_proj[e].T
                        out[t] += w * ((torch.nn.functional.silu(h[:F]) * h[F:]) @ experts.down_proj[e].T)
            return out

        experts.forward = forward
    ids, lengths = ref["input_ids"], ref["lengths"]
    mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
    out = model(input_ids=ids, attention_mask=mask).logits
    return [out[b, : int(n)] for b, n in enumerate(lengths)]


@pytest.mark.parametrize("family", ["mixtral", "qwen3"])
def test_the_substituted_model_equals_a_python_reimplementation_of_mone(family, fixtures, moelab, tmp_path):
    model, out, plan = substituted(moelab, fixtures, tmp_path, family)
    assert plan["substitute"] == "novices"
    cfg = json.loads((out / "config.json").read_text())
    mean = means(tmp_path / "s.h5")
    ref = load_file(str(fixtures / "models" / f"{family}.ref.safetensors"))
    want = reference_logits(model, ref, plan, mean)
    got = moelab_logits(moelab, out, ref, tmp_path)
    for a, b in zip(want, got):
        assert (a - b).abs().max().item() <= 1e-4
    # transformers loads it with moelab's remote code (router rows for the novices, the
    # experts module adding gate x novice for their slots): the same logits.
    assert cfg["auto_map"]["AutoModelForCausalLM"].startswith("modeling_moelab.")
    hf = hf_logits(hf_model(out, trust_remote_code=True), ref)
    for a, b in zip(hf, got):
        assert (a - b).abs().max().item() <= 1e-4
    # The substitution matters: the plainly pruned model's logits differ.
    moelab("prune", model, "--scores", tmp_path / "scores.json", "--criterion", "MoNE", "--ratio", 0.5, "--out",
           tmp_path / "plain2")
    plain = moelab_logits(moelab, tmp_path / "plain2", ref, tmp_path)
    assert max((a - b).abs().max().item() for a, b in zip(plain, got)) > 1e-3
    # Saved: the kept experts, the router's rows reordered (kept, then novices), the novices.
    w = {}
    for f in out.glob("*.safetensors"):
        w.update(load_file(str(f)))
    src = {}
    for f in model.glob("*.safetensors"):
        src.update(load_file(str(f)))
    router = "model.layers.{}.block_sparse_moe.gate.weight" if family == "mixtral" else "model.layers.{}.mlp.gate.weight"
    for l, lp in plan["layers"].items():
        n = len(lp["drop"])
        assert cfg["moelab_novices_per_layer"][int(l)] == n
        assert torch.equal(w[router.format(l)], src[router.format(l)][lp["keep"] + lp["drop"]])
        np.testing.assert_allclose(w[f"model.layers.{l}.mlp.experts.novices"].numpy(), mean[int(l)][lp["drop"]],
                                   rtol=1e-6, atol=1e-7)


def test_novices_give_the_same_logits_on_two_ranks_and_layer_by_layer(fixtures, moelab, tmp_path):
    _, out, _ = substituted(moelab, fixtures, tmp_path)
    ref = load_file(str(fixtures / "models" / "mixtral.ref.safetensors"))
    one = moelab_logits(moelab, out, ref, tmp_path)
    ids = write_ids_json(tmp_path / "ids2.json", ref["input_ids"], ref["lengths"])
    for extra, name in ((["--ranks", 2], "two"), ([], "layerwise")):
        args = [*extra, "forward", out, "--ids-json", ids, "--out", tmp_path / f"{name}.safetensors"]
        if name == "layerwise":
            args.insert(-2, "--layerwise")
        moelab(*args)
        got = load_file(str(tmp_path / f"{name}.safetensors"))
        for b, a in enumerate(one):
            assert (got[f"logits.{b}"] - a).abs().max().item() <= 1e-5, name


def test_what_cannot_be_substituted_is_refused_in_one_line(fixtures, moelab, tmp_path):
    model, out, plan = substituted(moelab, fixtures, tmp_path)

    def err(*args):
        r = moelab(*args, check=False)
        assert r.returncode != 0 and r.stderr.strip().count("\n") == 0, r.stderr
        return r.stderr

    base = ["prune", model, "--scores", tmp_path / "scores.json", "--criterion", "MoNE", "--ratio", 0.5]
    assert "--stats" in err(*base, "--substitute", "novices", "--out", tmp_path / "x")
    assert "is not novices" in err(*base, "--substitute", "mean", "--stats", tmp_path / "s.h5", "--out", tmp_path / "x")
    moelab("calibrate", model, "--data", tmp_path / "cal.json", "--seq-len", SEQ_LEN, "--num-samples", 0, "--criteria",
           "EAN", "--out", tmp_path / "ean.h5")
    msg = err(*base, "--substitute", "novices", "--stats", tmp_path / "ean.h5", "--out", tmp_path / "x")
    assert "ean.h5" in msg and "--collect out_moments" in msg
    assert "--substitute novices" in err("prune", model, "--plan", tmp_path / "plan.json", "--out", tmp_path / "x")
    # A model with novices is not pruned, merged, compressed or weight-scored again.
    assert "novices" in err("prune", out, "--drop", "0:0", "--out", tmp_path / "x")
    assert "novices" in err("compress", out, "--main", 1, "--out", tmp_path / "x")
    assert "novices" in err("score", "--model", out, "--criteria", "EWN", "--out", tmp_path / "x.json")
    # A family whose router is not a plain softmax (DeepSeek-V3's correction bias) is refused.
    ds = fixtures / "models" / "deepseek_v3"
    moelab("calibrate", ds, "--data", tmp_path / "cal.json", "--seq-len", SEQ_LEN, "--num-samples", 0, "--criteria",
           "MoNE", "--out", tmp_path / "ds.h5")
    moelab("score", "--stats", tmp_path / "ds.h5", "--criteria", "MoNE", "--out", tmp_path / "ds.json")
    msg = err("prune", ds, "--scores", tmp_path / "ds.json", "--criterion", "MoNE", "--ratio", 0.25, "--substitute",
              "novices", "--stats", tmp_path / "ds.h5", "--out", tmp_path / "x")
    assert "not supported" in msg and "--substitute" in msg
    assert not (tmp_path / "x").exists()


def test_a_sweep_compares_novices_with_plain_pruning(fixtures, moelab, tmp_path):
    from sweep_fixtures import write_sweep
    model, _ = mixtral_with_tokenizer(fixtures, tmp_path / "mixtral")
    spec = write_sweep(tmp_path / "spec", model, name="nov", criteria=["MoNE", "Max-RWN"], ratios=[0.5],
                       procedures=["one-shot"], substitute_novices=[False, True], protect_super_experts=[False, True])
    g = json.loads(moelab("sweep", "plan", spec, "--json", "-").stdout)
    cal = next(j for j in g["jobs"] if j["kind"] == "calibrate")
    assert set(cal["args"][cal["args"].index("--collect") + 1].split(",")) == {"out_max", "out_moments"}
    prunes = {j["tags"]["criterion"]: j for j in g["jobs"] if j["kind"] == "prune"}
    assert set(prunes) == {f"{c}{se}{n}" for c in ("Min-MoNE", "Max-RWN") for se in ("", "+SE") for n in ("", "+novices")}
    for tag, j in prunes.items():
        a = j["args"]
        assert ("--substitute" in a) == tag.endswith("+novices")
        assert ("--protect-super-experts" in a) == ("+SE" in tag)
        assert a.count("--stats") == int("+SE" in tag or tag.endswith("+novices"))
    results = tmp_path / "results"
    moelab("sweep", "run", spec, "--results", results)
    moelab("report", results, "--no-plots")
    md = (results / "report" / "report.md").read_text()
    assert "| Min-MoNE+novices |" in md and "| Max-RWN+SE+novices |" in md
    job = prunes["Min-MoNE+novices"]
    cfg = json.loads((results / job["output"] / "config.json").read_text())
    assert sum(cfg["moelab_novices_per_layer"]) == 3 * 4
