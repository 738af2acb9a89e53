"""Qwen3-Next and Qwen3.5-MoE: Gated DeltaNet linear attention beside gated full attention
(issue 26). What the shared family tests do not cover: sequences longer than the delta
rule's chunk (64) against transformers, statistics and scores under 1, 2 and 3 ranks,
greedy generation over the recurrent state against transformers' generate, and bad
configs and checkpoints refused in one line. (Parity on the fixtures: test_model_parity.cpp;
the chunked rule against the recurrence: test_gated_delta_rule.cpp; statistics against a
Python recomputation: test_calibrate.py; layer by layer: test_layerwise_calibration.py;
prune and merge round trips: test_model_families.py, test_prune_surgery.py, test_merge_surgery.py.)"""
import json
import pathlib
import shutil
import sys

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from helpers import one_line_error, train_small_tokenizer, write_ids_json

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "fixtures"))
import make_models  # noqa: E402  (the fixture models' shapes and their hybrid weights)


def build(tmp_path, family, seed=0, **overrides):
    """A random model of `family` (make_models' shapes, hybrid weights away from their
    identity inits) saved to tmp_path/family."""
    cfg, cls = getattr(make_models, family)(**overrides)
    torch.manual_seed(seed)
    model = cls(cfg).eval()
    with torch.no_grad():
        make_models.hybrid_weights(model)
        for layer in model.model.layers:
            if hasattr(layer.mlp, "gate"):
                layer.mlp.gate.weight.normal_(0, 0.5)
        # Logits of order 1 or more, so that 1e-4 is a tight bound (the init's are ~0.1).
        model.model.embed_tokens.weight.normal_(0, 1.0)
        model.lm_head.weight.normal_(0, 0.5)
    out = tmp_path / family
    model.save_pretrained(out)
    return out, model


def moelab_logits_of_ids(moelab, model_dir, ids, lengths, tmp_path):
    """helpers.moelab_logits for ids and lengths of its own (no fixture reference)."""
    out = tmp_path / "logits.safetensors"
    moelab("forward", model_dir, "--ids-json", write_ids_json(tmp_path / "ids.json", ids, lengths), "--out", out)
    got = load_file(str(out))
    return [got[f"logits.{b}"] for b in range(len(lengths))]


@pytest.mark.parametrize("family", ["qwen3_next", "qwen3_5_moe"])
def test_sequences_across_several_delta_rule_chunks_give_transformers_logits(family, moelab, tmp_path):
    """150 tokens are three chunks of 64 (the last partial), 64 exactly one, 97 one and a
    half; the shorter sequences are right-padded in the same batch."""
    model_dir, model = build(tmp_path, family, seed=5)
    lengths = [150, 97, 64, 5]
    g = torch.Generator().manual_seed(11)
    ids = torch.randint(1, 512, (len(lengths), max(lengths)), generator=g)
    mask = (torch.arange(ids.shape[1])[None, :] < torch.tensor(lengths)[:, None]).long()
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).logits
    mine = moelab_logits_of_ids(moelab, model_dir, ids, lengths, tmp_path)
    worst = max((ref[b, :n] - mine[b]).abs().max().item() for b, n in enumerate(lengths))
    print(f"[hybrid] {family}: max |logit diff| over {sum(lengths)} tokens = {worst:.3g}")
    assert worst <= 1e-4
    assert ref.abs().max() > 2.0  # logits of order 1: 1e-4 is a tight bound


def calibrate_long(moelab, model, data, out, ranks):
    """Windows of 80 tokens (past one delta-rule chunk) in batches of 2; --ranks only above 1."""
    args = (["--ranks", ranks] if ranks > 1 else []) + [
        "calibrate", model, "--data", data, "--seq-len", 80, "--num-samples", 0, "--batch-size", 2,
        "--collect", "usage,act_norms,out_norms,coactivation,act_moments", "--out", out]
    return moelab(*args)


def test_statistics_and_scores_do_not_depend_on_the_rank_count(fixtures, moelab, tmp_path):
    """Sequences of 80 tokens (past one chunk), 7 of them: ranks hold different sequences
    and different experts; every statistic equals the one-rank file, and so do the scores."""
    model = fixtures / "models" / "qwen3_next"
    g = torch.Generator().manual_seed(3)
    data = tmp_path / "cal.json"
    data.write_text(json.dumps({"input_ids": torch.randint(1, 512, (7, 80), generator=g).tolist()}))
    for ranks in (1, 2, 3):
        calibrate_long(moelab, model, data, tmp_path / f"p{ranks}.h5", ranks)
    scores = {}
    with h5py.File(tmp_path / "p1.h5") as a:
        for ranks in (2, 3):
            with h5py.File(tmp_path / f"p{ranks}.h5") as b:
                assert b.attrs["world_size"] == ranks
                assert set(a) == set(b)
                for grp in a:
                    for d in a[grp]:
                        want = a[grp][d][:].astype(float)
                        np.testing.assert_allclose(b[grp][d][:], want, rtol=1e-5, atol=1e-5 * np.abs(want).max(),
                                                   err_msg=f"{ranks} ranks: {grp}/{d}")
    for ranks in (1, 2, 3):
        out = tmp_path / f"s{ranks}.json"
        moelab("score", "--stats", tmp_path / f"p{ranks}.h5", "--model", model, "--criteria", "EUF,EAN,REAP",
               "--out", out)
        scores[ranks] = json.loads(out.read_text())["criteria"]
    assert sorted(int(l) for l in scores[1]["REAP"]["layers"]) == [0, 2, 3]  # layer 1 dense
    for ranks in (2, 3):
        for crit, body in scores[1].items():
            for layer, vals in body["layers"].items():
                np.testing.assert_allclose(scores[ranks][crit]["layers"][layer], vals, rtol=1e-5, err_msg=crit)


@pytest.mark.parametrize("ranks", [1, 2])
def test_greedy_generation_over_the_recurrent_state_equals_transformers_generate(ranks, fixtures, moelab, tmp_path):
    """Contexts of different lengths in one batch (each sequence's convolution inputs and
    delta-rule state continue from its own last token), 24 new tokens each."""
    model = tmp_path / "qwen3_next"
    shutil.copytree(fixtures / "models" / "qwen3_next", model)
    tok = train_small_tokenizer(fixtures, model)
    prompts = ["The Debian project", "apt-get install the package and its dependencies", "Question:"]
    hf = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    want = []
    for p in prompts:
        ids = torch.tensor([tok.encode(p).ids])
        with torch.no_grad():
            gen = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False,
                              pad_token_id=0, eos_token_id=None)
        want.append(gen[0, ids.shape[1]:].tolist())
    req = tmp_path / "r.jsonl"
    req.write_text("".join(json.dumps({"context": p, "max_gen_toks": 24}) + "\n" for p in prompts))
    out = tmp_path / "gen.jsonl"
    moelab(*(["--ranks", 2] if ranks == 2 else []), "generate", model, "--requests", req, "--out", out,
           "--batch-size", 3)
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert [r["tokens"] for r in rows] == want
    assert len(set(tuple(w) for w in want)) == 3


def copy_with_config(src, dst, edit):
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    edit(cfg)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


@pytest.mark.parametrize("family,edit,field", [
    ("qwen3_next", lambda c: c.update(layer_types=["linear_attention"] * 3), "layer_types"),  # 3 for 4 layers
    ("qwen3_5_moe", lambda c: c.update(layer_types=["linear_attention", "mamba", "full_attention", "full_attention"]),
     "layer_types"),
    ("qwen3_next", lambda c: c.update(layer_types=["linear_attention", "sliding_attention", "linear_attention",
                                                   "full_attention"]), "layer_types"),
    ("qwen3_next", lambda c: c.update(linear_num_value_heads=3), "linear_num_value_heads"),  # not a multiple of 2
    ("qwen3_5_moe", lambda c: c.update(linear_key_head_dim=0), "linear_key_head_dim"),
    ("qwen3_next", lambda c: c.update(full_attention_interval=0, layer_types=None), "full_attention_interval"),
])
def test_a_bad_hybrid_config_is_refused_in_one_line_naming_the_field(family, edit, field, fixtures, moelab, tmp_path):
    model = copy_with_config(fixtures / "models" / family, tmp_path / "m", edit)
    line = one_line_error(moelab("inspect", model, check=False))
    assert f'"{field}"' in line and "config.json" in line, line


def test_linear_attention_layers_in_a_family_without_them_are_refused(fixtures, moelab, tmp_path):
    model = copy_with_config(fixtures / "models" / "qwen2_moe", tmp_path / "m",
                             lambda c: c.update(layer_types=["linear_attention", "full_attention", "full_attention"]))
    line = one_line_error(moelab("inspect", model, check=False))
    assert '"layer_types"' in line and "qwen2_moe" in line and "linear_attention" in line, line


@pytest.mark.parametrize("family,tensor", [("qwen3_next", "model.layers.1.linear_attn.in_proj_ba.weight"),
                                           ("qwen3_5_moe", "model.layers.2.linear_attn.A_log"),
                                           ("qwen3_5_moe", "model.layers.0.linear_attn.conv1d.weight")])
def test_a_missing_linear_attention_tensor_is_refused_naming_it(family, tensor, fixtures, moelab, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(fixtures / "models" / family, model)
    weights = load_file(str(model / "model.safetensors"))
    del weights[tensor]
    save_file(weights, str(model / "model.safetensors"), metadata={"format": "pt"})
    for args in (["inspect", model], ["forward", model, "--ids-json", write_ids_json(
            tmp_path / "ids.json", torch.tensor([[1, 2, 3]]), [3]), "--out", tmp_path / "o.safetensors"]):
        line = one_line_error(moelab(*args, check=False))
        assert tensor in line and str(model) in line and "missing" in line, line
    assert not (tmp_path / "o.safetensors").exists()


def test_inspect_shows_the_layer_types(fixtures, moelab):
    info = json.loads(moelab("inspect", fixtures / "models" / "qwen3_next_bf16", "--json").stdout)
    assert [l["attention"] for l in info["layers"]] == ["full", "linear", "full", "linear"]
    assert info["attention"]["output_gate"] is True
    assert info["attention"]["linear"] == {"kind": "gated_deltanet", "num_key_heads": 2, "num_value_heads": 2,
                                           "key_head_dim": 8, "value_head_dim": 8, "conv_kernel": 3}
    text = moelab("inspect", fixtures / "models" / "qwen3_next").stdout
    assert "3 Gated DeltaNet layers" in text and "1 gated full-attention layers" in text
    assert text.count("[linear attention]") == 3 and text.count("[full attention]") == 1


def test_building_a_random_hybrid_model_is_refused_in_one_line(fixtures, moelab, tmp_path):
    cfg = tmp_path / "config.json"
    shutil.copy(fixtures / "models" / "qwen3_next" / "config.json", cfg)
    line = one_line_error(moelab("train", "--model-config", cfg, "--steps", 0, "--init-seed", 1, "--out",
                                 tmp_path / "init", check=False))
    assert "qwen3_next" in line and "not supported" in line
    assert not (tmp_path / "init").exists()


def test_the_text_model_of_a_qwen3_5_conditional_generation_checkpoint_is_read_and_pruned(moelab, tmp_path):
    """The layout the Hub publishes Qwen3.5-MoE in (Qwen3_5MoeForConditionalGeneration:
    text_config, model.language_model.*, a vision tower model.visual.*): moelab reads its
    text model (logits of the multimodal model on text), and pruning writes that text model
    (Qwen3_5MoeForCausalLM), which transformers loads with moelab's logits."""
    from transformers.models.qwen3_5_moe import Qwen3_5MoeConfig, Qwen3_5MoeForConditionalGeneration
    text, _ = make_models.qwen3_5_moe()
    vision = dict(depth=1, hidden_size=32, intermediate_size=32, num_heads=2, out_hidden_size=64)
    torch.manual_seed(2)
    model = Qwen3_5MoeForConditionalGeneration(Qwen3_5MoeConfig(text_config=text.to_dict(), vision_config=vision))
    model = model.eval()
    with torch.no_grad():
        make_models.hybrid_weights(model)
        model.model.language_model.embed_tokens.weight.normal_(0, 1.0)
        model.lm_head.weight.normal_(0, 0.5)
    src = tmp_path / "vl"
    model.save_pretrained(src)
    lengths = [70, 33]
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(1, 512, (2, 70), generator=g)
    mask = (torch.arange(70)[None, :] < torch.tensor(lengths)[:, None]).long()
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).logits
    mine = moelab_logits_of_ids(moelab, src, ids, lengths, tmp_path)
    assert max((ref[b, :n] - mine[b]).abs().max().item() for b, n in enumerate(lengths)) <= 1e-4
    info = json.loads(moelab("inspect", src, "--json").stdout)
    assert info["family"] == "qwen3_5_moe" and info["architecture"] == "Qwen3_5MoeForCausalLM"

    out = tmp_path / "pruned"
    drops = {0: [3], 1: [0], 2: [7], 3: [4]}
    args = ["prune", src, "--out", out]
    for layer, experts in drops.items():
        args += ["--drop", f"{layer}:{','.join(map(str, experts))}"]
    proc = moelab(*args)
    assert "Qwen3_5MoeForConditionalGeneration" in proc.stderr and "not written" in proc.stderr
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen3_5MoeForCausalLM"] and cfg["num_experts"] == 7
    written = load_file(str(out / "model.safetensors"))
    assert not [n for n in written if "visual" in n or "language_model" in n]
    for layer, dropped in drops.items():
        keep = [e for e in range(8) if e not in dropped]
        router = model.model.language_model.layers[layer].mlp.gate.weight
        assert torch.equal(written[f"model.layers.{layer}.mlp.gate.weight"], router[keep])
    pruned = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        hf = pruned(input_ids=ids, attention_mask=mask).logits
    mine = moelab_logits_of_ids(moelab, out, ids, lengths, tmp_path)
    assert max((hf[b, :n] - mine[b]).abs().max().item() for b, n in enumerate(lengths)) <= 1e-4


def test_the_planner_counts_the_delta_rules_working_set(fixtures, moelab, tmp_path):
    """plan-resources on a config alone: with 64 value heads of 128 over 1024 tokens, a Gated
    DeltaNet layer's chunk matrices alone ([B, Hv, T, 64] float32, three of them) are 48 MiB,
    far more than the same model's attention; the plan with linear layers holds them (the
    planner against measured peaks: bench/plan_vs_measured.py --family qwen3_next)."""
    def planned(layer_types):
        d = tmp_path / layer_types[0]
        d.mkdir()
        cfg = json.loads((fixtures / "models" / "qwen3_next" / "config.json").read_text())
        cfg.update(layer_types=layer_types, linear_num_key_heads=32, linear_num_value_heads=64,
                   linear_key_head_dim=128, linear_value_head_dim=128)
        (d / "config.json").write_text(json.dumps(cfg))
        out = moelab("plan-resources", d, "--seq-len", 1024, "--batch-size", 1, "--num-samples", 1, "--json").stdout
        return json.loads(out)["per_rank"][0]["activations"]
    hybrid = planned(["linear_attention", "linear_attention", "linear_attention", "full_attention"])
    full = planned(["full_attention"] * 4)
    chunks = 3 * 64 * 1024 * 64 * 4
    assert hybrid - full >= chunks, (hybrid, full)
