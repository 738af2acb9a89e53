"""moelab calibrate -> HDF5 -> moelab score, checked against statistics recomputed in
Python from the hidden states that transformers feeds each MoE block (hooks), and
against itself across rank counts."""
import functools
import json
import subprocess

import h5py
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

import helpers
from helpers import SEQ_LEN, input_error, mixtral_with_tokenizer

GROUPS = "usage,act_norms,out_norms,coactivation,token_ids,act_moments,act_outliers"
# This file's calibration: 9 sequences of exactly SEQ_LEN ids (seed 3), each one window; GROUPS collected.
token_file = functools.partial(helpers.token_file, n=9, seed=3)
calibrate = functools.partial(helpers.calibrate, options=("--collect", GROUPS))


def block(layer):
    """A decoder layer's MLP or MoE block (Llama-4 calls it feed_forward)."""
    return layer.mlp if hasattr(layer, "mlp") else layer.feed_forward


@torch.no_grad()
def reference_stats(model_dir, data):
    """Per MoE layer, the same sums, from the inputs of transformers' MoE blocks."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    cfg = model.config
    ids = torch.tensor(json.loads(data.read_text())["input_ids"])
    captured, chosen = {}, {}
    hooks = []
    for idx, layer in enumerate(model.model.layers):
        if hasattr(block(layer), "experts"):
            hooks.append(block(layer).register_forward_hook(
                lambda mod, inp, out, idx=idx: captured.setdefault(idx, []).append(inp[0].reshape(-1, inp[0].shape[-1]))))
            if model.config.model_type == "llama4_text":
                continue  # Llama-4: the router's top-k of the logits, recomputed below
            # Routers other than softmax top-k (GLM-4.5, MiniMax-M2: sigmoid with a correction
            # bias; ERNIE-4.5: softmax with one; Phi-3.5-MoE's sparsemixer, its `router`)
            # return (logits, gates, ids): their own choice and gates are the reference.
            router = block(layer).gate if hasattr(block(layer), "gate") else block(layer).router
            hooks.append(router.register_forward_hook(
                lambda mod, inp, out, idx=idx: chosen.setdefault(idx, []).append(out)
                if isinstance(out, tuple) and len(out) == 3 else None))
    with torch.no_grad():
        model(input_ids=ids)
    for h in hooks:
        h.remove()
    V, k = cfg.vocab_size, cfg.num_experts_per_tok
    renorm = getattr(cfg, "norm_topk_prob", True)
    out = {}
    for idx, xs in captured.items():
        x = torch.cat(xs).double()
        mlp = block(model.model.layers[idx])
        gate_on_input = cfg.model_type == "llama4_text"
        w_r = (mlp.gate if hasattr(mlp, "gate") else mlp.router).weight.double()
        gu, down = mlp.experts.gate_up_proj.double(), mlp.experts.down_proj.double()
        if gate_on_input:  # Llama4TextExperts: [E, D, 2F] and [E, F, D] (x @ W)
            gu, down = gu.transpose(1, 2), down.transpose(1, 2)
        E, F = gu.shape[0], gu.shape[1] // 2
        if gate_on_input:
            # Llama-4: top-k of the logits, gate = sigmoid(logit) on the expert's input; the
            # statistics are those of the expert on x * g, its output added with weight 1.
            top_logits, top_i = torch.topk(x @ w_r.T, k, dim=-1)
            top_w = torch.sigmoid(top_logits)
        elif idx in chosen:
            top_w = torch.cat([c[1] for c in chosen[idx]]).double()
            top_i = torch.cat([c[2] for c in chosen[idx]])
        else:
            probs = torch.softmax(x @ w_r.T, dim=-1)
            top_w, top_i = torch.topk(probs, k, dim=-1)
            if renorm:
                top_w = top_w / top_w.sum(-1, keepdim=True)
        s = {n: np.zeros(E) for n in ["tokens_E", "gate_sum_E", "act_norm_sum_E", "act_norm_sq_sum_E",
                                       "out_norm_sum_E", "gate_out_norm_sum_E"]}
        s["coactivation_EE"] = np.zeros((E, E))
        s["act_sum_EF"], s["act_sq_sum_EF"] = np.zeros((E, F)), np.zeros((E, F))
        seen = np.zeros((E, V), dtype=bool)
        tokens = ids.reshape(-1).numpy()
        for t in range(x.shape[0]):
            for j in range(k):
                e, g = int(top_i[t, j]), float(top_w[t, j])
                x_in = x[t] * g if gate_on_input else x[t]
                h = x_in @ gu[e].T
                a = torch.nn.functional.silu(h[:F]) * h[F:]
                f = a @ down[e].T
                s["tokens_E"][e] += 1
                s["gate_sum_E"][e] += g
                s["act_norm_sum_E"][e] += float(a.norm())
                s["act_norm_sq_sum_E"][e] += float(a.norm()) ** 2
                s["out_norm_sum_E"][e] += float(f.norm())
                s["gate_out_norm_sum_E"][e] += (1.0 if gate_on_input else g) * float(f.norm())
                s["act_sum_EF"][e] += a.numpy()
                s["act_sq_sum_EF"][e] += (a ** 2).numpy()
                seen[e, tokens[t]] = True
                for j2 in range(k):
                    s["coactivation_EE"][e, int(top_i[t, j2])] += 1
        s["seen"] = seen
        # EAO: per-channel mean/std over the routed tokens, then values outside +-3 std.
        n = np.maximum(s["tokens_E"], 1)[:, None]
        mean = s["act_sum_EF"] / n
        std = np.sqrt(np.maximum(s["act_sq_sum_EF"] / n - mean ** 2, 0))
        s["act_outliers_E"] = np.zeros(E)
        for t in range(x.shape[0]):
            for j in range(k):
                e = int(top_i[t, j])
                h = (x[t] * float(top_w[t, j]) if gate_on_input else x[t]) @ gu[e].T
                a = (torch.nn.functional.silu(h[:F]) * h[F:]).numpy()
                s["act_outliers_E"][e] += np.sum(np.abs(a - mean[e]) > 3 * std[e])
        out[idx] = s
    return out


@pytest.mark.parametrize("family", ["mixtral", "qwen3", "glm4_moe", "minimax_m2", "glm4_moe_lite", "ernie4_5_moe",
                                    "phimoe", "llama4", "qwen3_next", "qwen3_5_moe"])
def test_statistics_equal_a_python_recomputation_from_transformers(family, fixtures, moelab, tmp_path):
    model = fixtures / "models" / family
    data = token_file(tmp_path / "cal.json")
    calibrate(moelab, model, data, tmp_path / "stats.h5")
    ref = reference_stats(model, data)
    with h5py.File(tmp_path / "stats.h5") as f:
        assert f.attrs["num_tokens"] == 9 * SEQ_LEN
        assert [int(x) for x in f.attrs["moe_layers"].decode().split(",")] == sorted(ref)
        for idx, s in ref.items():
            g = f[f"layer_{idx:03d}"]
            for name, want in s.items():
                if name == "seen":
                    got = np.unpackbits(g["token_bitmap_EW"][:], axis=1, bitorder="little")[:, :want.shape[1]]
                    assert np.array_equal(got.astype(bool), want), f"{family} layer {idx} token bitmap"
                    continue
                got = g[name][:]
                assert g[name].attrs["dtype"].decode() in ("int64", "float64")
                # moelab computes in fp32, the reference in fp64: 1e-5 relative to each value,
                # or to the dataset's scale for per-channel sums that cancel to near zero.
                # Outlier counts: a value within rounding of mean +- 3 std may fall either side.
                atol = 2 if name == "act_outliers_E" else 1e-5 * np.abs(want).max()
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=atol, err_msg=f"{family} layer {idx} {name}")


@pytest.mark.parametrize("ranks", [2, 4])
def test_statistics_and_scores_do_not_depend_on_the_rank_count(ranks, fixtures, moelab, tmp_path):
    model = fixtures / "models" / "qwen3"
    data = token_file(tmp_path / "cal.json", n=11)
    calibrate(moelab, model, data, tmp_path / "p1.h5")
    calibrate(moelab, model, data, tmp_path / "pn.h5", ranks=ranks)
    with h5py.File(tmp_path / "p1.h5") as a, h5py.File(tmp_path / "pn.h5") as b:
        assert b.attrs["world_size"] == ranks
        for g in a:
            for d in a[g]:
                # Signed per-channel sums can cancel to near zero: their tolerance is
                # relative to the dataset's scale (matmul blocking differs with the rows a rank holds).
                want = a[g][d][:].astype(float)
                atol = 2 if d == "act_outliers_E" else 1e-5 * np.abs(want).max()
                np.testing.assert_allclose(b[g][d][:], want, rtol=1e-5, atol=atol, err_msg=f"{g}/{d}")
    scores = {}
    for name in ("p1", "pn"):
        moelab("score", "--stats", tmp_path / f"{name}.h5", "--model", model, "--criteria", "EUF,EAN,REAP,SoftFrequency",
               "--out", tmp_path / f"{name}.json")
        scores[name] = json.loads((tmp_path / f"{name}.json").read_text())["criteria"]
    for crit, body in scores["p1"].items():
        for layer, vals in body["layers"].items():
            other = scores["pn"][crit]["layers"][layer]
            np.testing.assert_allclose(other, vals, rtol=1e-5)
            assert list(np.argsort(other, kind="stable")) == list(np.argsort(vals, kind="stable"))


def test_scores_follow_their_formulas_from_the_file(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "mixtral"
    calibrate(moelab, model, token_file(tmp_path / "cal.json"), tmp_path / "s.h5")
    moelab("score", "--stats", tmp_path / "s.h5", "--criteria", "EUF,EAN,REAP,SoftFrequency,EAO", "--out",
           tmp_path / "scores.json")
    got = json.loads((tmp_path / "scores.json").read_text())["criteria"]
    with h5py.File(tmp_path / "s.h5") as f:
        for layer in ("0", "1", "2"):
            g = f[f"layer_{int(layer):03d}"]
            n = g["tokens_E"][:].astype(float)
            np.testing.assert_allclose(got["EUF"]["layers"][layer], n)
            np.testing.assert_allclose(got["EAN"]["layers"][layer], g["act_norm_sum_E"][:])
            np.testing.assert_allclose(got["EAO"]["layers"][layer], g["act_outliers_E"][:])
            np.testing.assert_allclose(got["SoftFrequency"]["layers"][layer], g["gate_sum_E"][:])
            np.testing.assert_allclose(got["REAP"]["layers"][layer],
                                       np.where(n > 0, g["gate_out_norm_sum_E"][:] / np.maximum(n, 1), 0.0))


def test_text_and_jsonl_data_are_tokenized_with_the_model_tokenizer(fixtures, moelab, tmp_path):
    model, tok = mixtral_with_tokenizer(fixtures, tmp_path / "model")
    text = (fixtures / "tokenizers" / "multilingual.txt").read_text()
    (tmp_path / "a.txt").write_text(text)
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"text": line}) for line in text.splitlines() if line))
    for data in ("a.txt", "b.jsonl"):
        moelab("calibrate", model, "--data", tmp_path / data, "--seq-len", 32, "--num-samples", 4, "--out",
               tmp_path / f"{data}.h5")
        with h5py.File(tmp_path / f"{data}.h5") as f:
            assert f.attrs["num_tokens"] == 4 * 32


def test_bad_inputs_are_one_line_errors(fixtures, moelab, tmp_path):
    mixtral, qwen3 = fixtures / "models" / "mixtral", fixtures / "models" / "qwen3"
    data = token_file(tmp_path / "cal.json")
    moelab("calibrate", mixtral, "--data", data, "--seq-len", SEQ_LEN, "--criteria", "EUF", "--out", tmp_path / "s.h5")

    err = functools.partial(input_error, moelab)

    assert 'did you mean "REAP"' in err("score", "--stats", tmp_path / "s.h5", "--criteria", "REAPP", "--out",
                                       tmp_path / "x.json")
    msg = err("score", "--stats", tmp_path / "s.h5", "--criteria", "EAN", "--out", tmp_path / "x.json")
    assert "act_norms" in msg and "moelab calibrate" in msg
    assert "different model" in err("score", "--stats", tmp_path / "s.h5", "--model", qwen3, "--criteria", "EUF",
                                    "--out", tmp_path / "x.json")
    assert "--model" in err("score", "--stats", tmp_path / "s.h5", "--criteria", "RWN", "--out", tmp_path / "x.json")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\nnot json\n')
    assert "line 2" in err("calibrate", mixtral, "--data", bad, "--out", tmp_path / "y.h5")
    not_h5 = tmp_path / "not.h5"
    not_h5.write_text("hello")
    assert "not an HDF5 file" in err("score", "--stats", not_h5, "--criteria", "EUF", "--out", tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "y.h5").exists()


def test_statistics_of_another_model_with_equal_expert_counts_are_refused(fixtures, moelab, tmp_path):
    """Equal MoE layers and expert counts are not enough: the file's hidden_size and vocab_size
    must be the model's (a hidden-size-1024 model's statistics once scored against the
    hidden-size-192 default model). The error names both values; a moved folder is a note."""
    import shutil
    from transformers import AutoConfig, MixtralForCausalLM
    mixtral = fixtures / "models" / "mixtral"
    data = token_file(tmp_path / "cal.json")
    moelab("calibrate", mixtral, "--data", data, "--seq-len", SEQ_LEN, "--criteria", "EUF", "--out", tmp_path / "s.h5")
    base = AutoConfig.from_pretrained(mixtral)

    def variant(name, **changes):
        cfg = AutoConfig.from_pretrained(mixtral)
        for k, v in changes.items():
            setattr(cfg, k, v)
        torch.manual_seed(0)
        MixtralForCausalLM(cfg).save_pretrained(tmp_path / name)
        return tmp_path / name

    def refused(model):
        out = tmp_path / "x.json"
        proc = moelab("score", "--stats", tmp_path / "s.h5", "--model", model, "--criteria", "EUF", "--out", out,
                      check=False)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().count("\n") == 0 and not out.exists(), proc.stderr
        return proc.stderr

    wider = variant("wider", hidden_size=2 * base.hidden_size, head_dim=2 * base.hidden_size // base.num_attention_heads)
    msg = refused(wider)
    assert "s.h5" in msg and "hidden_size" in msg and f" {base.hidden_size} " in msg and f"{2 * base.hidden_size} " in msg
    msg = refused(variant("vocab", vocab_size=base.vocab_size + 8))
    assert "vocab_size" in msg and str(base.vocab_size) in msg and str(base.vocab_size + 8) in msg
    # the same model in another folder: scored, with a note naming both places
    shutil.copytree(mixtral, tmp_path / "moved")
    proc = moelab("score", "--stats", tmp_path / "s.h5", "--model", tmp_path / "moved", "--criteria", "EUF", "--out",
                  tmp_path / "moved.json")
    assert "note:" in proc.stdout + proc.stderr and "moved" in proc.stdout + proc.stderr
    assert (tmp_path / "moved.json").exists()
