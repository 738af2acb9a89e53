"""Qwen2-MoE, OLMoE, DeepSeek-V3, DeepSeek-V2, gpt-oss, GLM-4.5 (glm4_moe), MiniMax-M2, GLM-4.7-Flash
(glm4_moe_lite), ERNIE-4.5, Phi-3.5-MoE (phimoe), Llama-4 (llama4), Qwen3-Next and Qwen3.5-MoE end to end: moelab prune -> transformers
loads the pruned checkpoint (stock config when every layer keeps the same count, remote
code otherwise) with moelab's own logits; shared experts and dense layers stay as they were;
DeepSeek-V3's correction-bias rows follow the router rows and its expert groups survive a
pruning that leaves them equal (or are given up, with n_group = topk_group = 1); `inspect`
shows each family's structure; every criterion scores every family (or says why not); a small
sweep (calibrate, score, prune, eval on 2 ranks) runs on each family."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from helpers import hf_logits, hf_model, moelab_logits, prune, split_ref, train_small_tokenizer, write_ids_json
from sweep_fixtures import eval_metrics, records, write_sweep

# family fixture -> (uneven drops, uniform drops, MoE layers, experts per MoE layer)
DROPS = {
    "qwen2_moe": (["0:1,5", "2:2"], ["0:3", "2:6"], [0, 2], 8),                     # layer 1 dense
    "olmoe": (["0:1,5,9", "1:2"], ["0:0,15", "1:3,4"], [0, 1], 16),
    "deepseek_v3": (["1:1,5", "2:2"], ["1:0,4,8,12", "2:1,5,10,15"], [1, 2], 16),  # one per group of 4
    "deepseek_v2": (["1:1,5", "2:2"], ["1:0", "2:7"], [1, 2], 8),                  # layer 0 dense
    "deepseek_v2_group": (["1:1,5,6", "2:3"], ["1:0,2,4,6", "2:1,3,5,7"], [1, 2], 8),  # one per group of 2
    "gpt_oss": (["0:1,5", "3:2"], ["0:3", "1:0", "2:7", "3:4"], [0, 1, 2, 3], 8),  # router and expert biases
    "glm4_moe": (["1:1,5", "2:2"], ["1:0,4,8,12", "2:1,5,10,15"], [1, 2], 16),     # one per group of 4
    "glm4_moe_air": (["0:1,5", "2:2"], ["0:3", "1:0", "2:7"], [0, 1, 2], 8),        # fused, bf16, no dense
    "minimax_m2": (["0:1,5", "2:2"], ["0:3", "1:0", "2:7"], [0, 1, 2], 8),          # bias on the MoE block
    "glm4_moe_lite": (["1:1,5", "2:2"], ["1:0,4", "2:1,5"], [1, 2], 8),             # MLA; one per group of 4
    "ernie4_5_moe": (["1:1,5", "2:2"], ["1:3", "2:6"], [1, 2], 8),                  # [1, E] bias; layer 0 dense
    "phimoe": (["0:1,5", "2:2"], ["0:3", "1:0", "2:7"], [0, 1, 2], 8),              # sparsemixer, LayerNorm
    "llama4": (["0:1,5", "3:2"], ["0:3", "1:0", "3:7"], [0, 1, 3], 8),              # layer 2 dense, fused [E, D, 2F]
    "qwen3_next": (["0:1,5", "3:2"], ["0:3", "2:0", "3:7"], [0, 2, 3], 8),          # Gated DeltaNet; layer 1 dense
    "qwen3_5_moe": (["1:1,5", "3:2"], ["0:3", "1:0", "2:7", "3:4"], [0, 1, 2, 3], 8),  # separate projections
}
COUNT_KEY = {"qwen2_moe": "num_experts", "olmoe": "num_experts", "deepseek_v3": "n_routed_experts",
             "deepseek_v2": "n_routed_experts", "deepseek_v2_group": "n_routed_experts",
             "gpt_oss": "num_local_experts", "glm4_moe": "n_routed_experts", "glm4_moe_air": "n_routed_experts",
             "minimax_m2": "num_local_experts", "glm4_moe_lite": "n_routed_experts",
             "ernie4_5_moe": "moe_num_experts", "phimoe": "num_local_experts",
             "llama4": "num_local_experts", "qwen3_next": "num_experts", "qwen3_5_moe": "num_experts"}


def parse(drop):
    layer, experts = drop.split(":")
    return int(layer), [int(e) for e in experts.split(",")]


def block(model, layer):
    """Decoder layer `layer`'s MLP or MoE block (Llama-4 calls it feed_forward)."""
    layer = model.model.layers[layer]
    return layer.mlp if hasattr(layer, "mlp") else layer.feed_forward


def shared_block(model, layer):
    mlp = block(model, layer)
    return getattr(mlp, "shared_expert", None) or getattr(mlp, "shared_experts", None)


def check_survivors(pruned, original, drops, num_experts):
    for layer, dropped in map(parse, drops):
        keep = [e for e in range(num_experts) if e not in dropped]
        mlp, mlp0 = block(pruned, layer), block(original, layer)
        # gpt-oss, Llama-4: router
        gate, gate0 = (mlp.router, mlp0.router) if hasattr(mlp0, "router") else (mlp.gate, mlp0.gate)
        assert torch.equal(gate.weight, gate0.weight[keep])
        for name in ("e_score_correction_bias", "bias"):  # DeepSeek-V3, gpt-oss
            if getattr(gate0, name, None) is not None:
                assert torch.equal(getattr(gate, name), getattr(gate0, name)[keep])
        if hasattr(gate0, "moe_statics"):  # ERNIE-4.5: [1, E], experts along the second axis
            bias, bias0 = gate.moe_statics.e_score_correction_bias, gate0.moe_statics.e_score_correction_bias
            assert torch.equal(bias, bias0[:, keep])
        experts, experts0 = mlp.experts, mlp0.experts
        assert torch.equal(experts.down_proj, experts0.down_proj[keep])
        assert torch.equal(experts.gate_up_proj, experts0.gate_up_proj[keep])
        for name in ("gate_up_proj_bias", "down_proj_bias"):  # gpt-oss
            if hasattr(experts0, name):
                assert torch.equal(getattr(experts, name), getattr(experts0, name)[keep])
        # Shared experts are never pruned: the same weights as before.
        shared, shared0 = shared_block(pruned, layer), shared_block(original, layer)
        if shared0 is not None:
            for a, b in zip(shared.parameters(), shared0.parameters()):
                assert torch.equal(a, b)


@pytest.mark.parametrize("family", list(DROPS))
def test_uneven_prune_loads_in_transformers_with_matching_logits(family, fixtures, moelab, tmp_path):
    src = fixtures / "models" / family
    out = tmp_path / "pruned"
    uneven, _, moe_layers, E = DROPS[family]
    prune(moelab, src, out, uneven)
    cfg = json.loads((out / "config.json").read_text())
    counts = cfg["moelab_num_experts_per_layer"]
    for layer, dropped in map(parse, uneven):
        assert counts[layer] == E - len(dropped)
    assert all(counts[l] == 0 for l in range(len(counts)) if l not in moe_layers)  # dense layers stay dense
    ref = load_file(str(fixtures / "models" / f"{family}.ref.safetensors"))
    pruned = hf_model(out, trust_remote_code=True)
    hf = hf_logits(pruned, ref)
    mine = moelab_logits(moelab, out, ref, tmp_path)
    worst = max((a - b).abs().max().item() for a, b in zip(hf, mine))
    print(f"[roundtrip uneven] {family}: max |logit diff| transformers vs moelab = {worst:.3g}")
    assert worst <= 1e-4
    check_survivors(pruned, hf_model(src, trust_remote_code=False), uneven, E)
    assert max((a - r).abs().max().item() for a, r in zip(hf, split_ref(ref))) > 1e-3  # pruning changed the model


@pytest.mark.parametrize("family", list(DROPS))
def test_uniform_prune_loads_with_stock_transformers(family, fixtures, moelab, tmp_path):
    src = fixtures / "models" / family
    out = tmp_path / "pruned"
    _, uniform, _, E = DROPS[family]
    prune(moelab, src, out, uniform)
    cfg = json.loads((out / "config.json").read_text())
    src_cfg = json.loads((src / "config.json").read_text())
    assert cfg[COUNT_KEY[family]] == E - len(parse(uniform[0])[1])
    assert "auto_map" not in cfg and "moelab_num_experts_per_layer" not in cfg
    # Balanced drops (the same number from every group) keep the grouped routing.
    assert cfg.get("n_group") == src_cfg.get("n_group") and cfg.get("topk_group") == src_cfg.get("topk_group")
    ref = load_file(str(fixtures / "models" / f"{family}.ref.safetensors"))
    pruned = hf_model(out, trust_remote_code=False)
    hf = hf_logits(pruned, ref)
    mine = moelab_logits(moelab, out, ref, tmp_path)
    worst = max((a - b).abs().max().item() for a, b in zip(hf, mine))
    print(f"[roundtrip uniform] {family}: max |logit diff| transformers vs moelab = {worst:.3g}")
    assert worst <= 1e-4
    check_survivors(pruned, hf_model(src, trust_remote_code=False), uniform, E)


def test_deepseek_v3_unequal_group_pruning_gives_up_the_groups_consistently(fixtures, moelab, tmp_path):
    """Two experts from group 0 and none from the others: the groups can no longer be
    equal, so the pruned config routes over all experts (n_group = topk_group = 1), says
    so, and transformers and moelab agree on that model."""
    src = fixtures / "models" / "deepseek_v3"
    out = tmp_path / "pruned"
    proc = prune(moelab, src, out, ["1:0,1", "2:0,1"])
    assert "grouped routing" in proc.stderr
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["n_group"], cfg["topk_group"], cfg["n_routed_experts"]) == (1, 1, 14)
    ref = load_file(str(fixtures / "models" / "deepseek_v3.ref.safetensors"))
    hf = hf_logits(hf_model(out, trust_remote_code=False), ref)
    mine = moelab_logits(moelab, out, ref, tmp_path)
    assert max((a - b).abs().max().item() for a, b in zip(hf, mine)) <= 1e-4


@pytest.mark.parametrize("family,shared,dense", [("qwen2_moe", 80, [1]), ("olmoe", 0, []),
                                                 ("deepseek_v3", 32, [0]), ("deepseek_v2", 64, [0]),
                                                 ("gpt_oss", 0, []), ("glm4_moe", 32, [0]),
                                                 ("glm4_moe_air", 64, []), ("minimax_m2", 0, []),
                                                 ("glm4_moe_lite", 32, [0]), ("ernie4_5_moe", 32, [0]),
                                                 ("phimoe", 0, []), ("llama4", 32, [2]), ("qwen3_next", 48, [1]),
                                                 ("qwen3_5_moe", 48, [])])
def test_inspect_shows_shared_experts_and_dense_layers_as_never_pruned(family, shared, dense, fixtures, moelab):
    info = json.loads(moelab("inspect", fixtures / "models" / family, "--json").stdout)
    assert info["shared_expert_intermediate_size"] == shared
    for layer in info["layers"]:
        if layer["layer"] in dense:
            assert layer["type"] == "dense" and not layer["prunable"]
        else:
            assert layer["type"] == "moe" and layer["prunable"]
            assert ("shared_expert" in layer) == (shared > 0)
            if shared:
                assert layer["shared_expert"]["prunable"] is False
    assert (info["params"]["shared_experts"] > 0) == (shared > 0)
    assert info["family"] == family.removesuffix("_air")
    assert info["attention"]["kind"] == ("mla" if family.startswith("deepseek") or family == "glm4_moe_lite" else "gqa")
    text = moelab("inspect", fixtures / "models" / family).stdout
    if shared:
        assert "shared expert (never pruned)" in text
    if dense:
        assert "dense MLP, never pruned" in text
    if family in ("deepseek_v3", "glm4_moe"):
        assert info["routing"] == {"scoring": "sigmoid", "norm_topk_prob": True, "topk_method": "noaux_tc",
                                   "n_group": 4, "topk_group": 2, "routed_scaling_factor": 2.5,
                                   "correction_bias": True}
        assert "correction bias" in text
        assert ("multi-head latent" in text) == (family == "deepseek_v3")
    if family == "phimoe":
        assert info["routing"]["topk_method"] == "sparsemixer" and info["routing"]["jitter_eps"] == pytest.approx(0.3)
        assert "sparsemixer" in text
    if family == "ernie4_5_moe":
        assert info["routing"]["scoring"] == "softmax" and info["routing"]["correction_bias"] is True


def criteria_names(moelab):
    out = moelab("score", "--list").stdout
    # The table: a header, one row per criterion, then a blank line and a note.
    rows = out.splitlines()[1:]
    return [line.split()[0] for line in rows[: rows.index("")] if line.strip()] if "" in rows else \
        [line.split()[0] for line in rows if line.strip()]


# NAEE's subset search re-routes with a softmax top-k: DeepSeek-V3's router is not that.
# Llama-4's gates scale the experts' input: NAEE's re-routing does not reproduce that either.
NAEE_UNSUPPORTED = {"deepseek_v3", "glm4_moe", "minimax_m2", "glm4_moe_lite", "ernie4_5_moe", "phimoe", "llama4"}


@pytest.mark.parametrize("family", ["qwen2_moe", "olmoe", "deepseek_v3", "deepseek_v2", "gpt_oss", "glm4_moe",
                                    "minimax_m2", "glm4_moe_lite", "ernie4_5_moe", "phimoe", "llama4", "qwen3_next",
                                    "qwen3_5_moe"])
def test_every_criterion_scores_every_family(family, fixtures, moelab, tmp_path):
    model = fixtures / "models" / family
    data = tmp_path / "cal.json"
    data.write_text(json.dumps({"input_ids": [[1 + (i * 7 + j * 3) % 500 for j in range(16)] for i in range(6)]}))
    names = criteria_names(moelab)
    wanted = [n for n in names if not (n == "NAEE" and family in NAEE_UNSUPPORTED)]
    if family in NAEE_UNSUPPORTED:
        proc = moelab("calibrate", model, "--data", data, "--seq-len", 16, "--criteria", "NAEE", "--out",
                      tmp_path / "naee.h5", check=False)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode == 2 and len(errors) == 1
        assert "NAEE" in errors[0] and "not supported" in errors[0] and "config.json" in errors[0]
    stats = tmp_path / "s.h5"
    moelab("calibrate", model, "--data", data, "--seq-len", 16, "--criteria", ",".join(wanted), "--out", stats)
    out = tmp_path / "scores.json"
    moelab("score", "--stats", stats, "--model", model, "--second-model", model, "--criteria", ",".join(wanted),
           "--out", out)
    scores = json.loads(out.read_text())["criteria"]
    moe_layers, E = DROPS[family][2], DROPS[family][3]
    for name in wanted:
        layers = scores[name]["layers"]
        # Only the routed experts of MoE layers are scored: no dense layer, no shared expert.
        assert sorted(int(k) for k in layers) == moe_layers, name
        for vals in layers.values():
            assert len(vals) == E and all(v == v for v in vals), name


@pytest.mark.parametrize("family", ["qwen2_moe", "olmoe", "deepseek_v3", "deepseek_v2", "gpt_oss", "glm4_moe",
                                    "minimax_m2", "ernie4_5_moe", "phimoe", "llama4", "qwen3_next"])
def test_a_small_sweep_runs_end_to_end(family, fixtures, moelab, tmp_path):
    model = tmp_path / family
    shutil.copytree(fixtures / "models" / family, model)
    train_small_tokenizer(fixtures, model)
    spec = write_sweep(tmp_path / "spec", model, criteria=["EAN", "Max-RWN"], ratios=[0.25],
                       procedures=["one-shot"])
    results = tmp_path / "results"
    moelab("sweep", "run", spec, "--results", results)
    jobs = json.loads((results / "plan.json").read_text())["jobs"]
    kinds = [j["kind"] for j in jobs]
    assert (kinds.count("calibrate"), kinds.count("score"), kinds.count("prune"), kinds.count("eval")) == (1, 1, 2, 3)
    recs = records(results)
    assert set(recs) == {j["id"] for j in jobs}
    assert all(r["state"] == "done" and r["exit_code"] == 0 for r in recs.values())
    metrics = eval_metrics(results)  # the full model and the two pruned ones
    assert len(metrics) == 3
    assert all(m[0][0] == "wiki" and 1 < m[0][1]["perplexity"] < float("inf") for m in metrics.values())


@pytest.mark.parametrize("family", ["qwen2_moe", "olmoe", "deepseek_v3", "deepseek_v2", "glm4_moe", "minimax_m2",
                                    "glm4_moe_lite", "ernie4_5_moe", "phimoe", "llama4"])
def test_train_from_the_config_gives_a_model_transformers_runs_with_moelab_logits(family, fixtures, moelab,
                                                                                  tmp_path):
    """moelab train builds every tensor of the family (MLA, shared experts, correction
    bias), trains all of them (full fine-tuning) and writes a checkpoint transformers loads."""
    config = tmp_path / "config.json"
    shutil.copy(fixtures / "models" / family / "config.json", config)
    data = tmp_path / "ids.json"
    data.write_text(json.dumps({"input_ids": [[(3 + 11 * ((i + j) % 7)) % 512 for j in range(16)] for i in range(8)]}))
    moelab("train", "--model-config", config, "--data", data, "--seq-len", 16, "--steps", 3, "--batch-size", 4,
           "--lr", 1e-3, "--warmup", 1, "--init-seed", 1, "--out", tmp_path / "model")
    moelab("train", "--model-config", config, "--steps", 0, "--init-seed", 1, "--out", tmp_path / "init")
    out = tmp_path / "model"
    init, trained = load_file(str(tmp_path / "init" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert set(init) == set(trained)
    shared = [n for n in init if "shared_expert" in n]
    assert bool(shared) == (family not in ("olmoe", "minimax_m2", "phimoe"))
    # LayerNorm biases and lm_head's bias (Phi-3.5-MoE) are trained like the rest.
    for name in [n for n in init if n.endswith("layernorm.bias") or n == "lm_head.bias"]:
        assert not torch.equal(init[name], trained[name]), name
    # Full training moves shared experts and every attention weight too.
    for name in shared + [n for n in init if "self_attn" in n and n.endswith("proj.weight")]:
        assert not torch.equal(init[name], trained[name]), name
    g = torch.Generator().manual_seed(3)
    ref = {"input_ids": torch.randint(0, 512, (3, 12), generator=g), "lengths": torch.tensor([12, 7, 10])}
    hf = hf_logits(hf_model(out, trust_remote_code=False), ref)
    mine = moelab_logits(moelab, out, ref, tmp_path)
    assert max((a - b).abs().max().item() for a, b in zip(hf, mine)) <= 1e-4


# family -> (count key, experts after a 25% merge of 16 or 8, the correction bias of layer 1 and its
# shape, grouped)
MERGE_CASES = {
    "deepseek_v3": ("n_routed_experts", 12, "model.layers.1.mlp.gate.e_score_correction_bias", (12,), True),
    "glm4_moe": ("n_routed_experts", 12, "model.layers.1.mlp.gate.e_score_correction_bias", (12,), True),
    "minimax_m2": ("num_local_experts", 6, "model.layers.1.block_sparse_moe.e_score_correction_bias", (6,), False),
    "glm4_moe_lite": ("n_routed_experts", 6, "model.layers.1.mlp.gate.e_score_correction_bias", (6,), True),
    "ernie4_5_moe": ("moe_num_experts", 6, "model.layers.1.mlp.moe_statics.e_score_correction_bias", (1, 6), False),
    "phimoe": ("num_local_experts", 6, None, None, False),  # no bias: the sparsemixer router's rows only
    "qwen3_next": ("num_experts", 6, None, None, False),     # Gated DeltaNet layers, a gated shared expert
    "qwen3_5_moe": ("num_experts", 6, None, None, False),
}


@pytest.mark.parametrize("family", list(MERGE_CASES))
def test_merged_routers_and_their_biases_load_in_transformers_with_matching_logits(family, fixtures, moelab,
                                                                                        tmp_path):
    """moelab merge on the routers with a correction bias (sigmoid, or ERNIE-4.5's softmax) and on
    Phi-3.5-MoE's sparsemixer: a bias is merged like the router rows, merged experts belong to no
    group (n_group = topk_group = 1, said on stderr), and transformers runs the result with
    moelab's logits."""
    key, after, bias, bias_shape, grouped = MERGE_CASES[family]
    src = fixtures / "models" / family
    data = tmp_path / "cal.json"
    data.write_text(json.dumps({"input_ids": [[1 + (i * 7 + j * 3) % 500 for j in range(16)] for i in range(6)]}))
    moelab("calibrate", src, "--data", data, "--seq-len", 16, "--collect", "dense_outputs", "--out", tmp_path / "s.h5")
    out = tmp_path / "merged"
    proc = moelab("merge", src, "--stats", tmp_path / "s.h5", "--ratio", 0.25, "--out", out)
    assert ("grouped routing" in proc.stderr) == grouped
    cfg = json.loads((out / "config.json").read_text())
    assert cfg[key] == after
    if grouped:
        assert (cfg["n_group"], cfg["topk_group"]) == (1, 1)
    merged = load_file(str(out / "model.safetensors"))
    if bias is not None:
        assert merged[bias].shape == bias_shape
    ref = load_file(str(fixtures / "models" / f"{family}.ref.safetensors"))
    hf = hf_logits(hf_model(out, trust_remote_code=True), ref)
    mine = moelab_logits(moelab, out, ref, tmp_path)
    assert max((a - b).abs().max().item() for a, b in zip(hf, mine)) <= 1e-4


def config_variant(src, tmp_path, name, edit):
    """A copy of fixture `src` whose config.json is in transformers 4.x form (rope_theta
    top-level, no rope_parameters), then changed by `edit(cfg)`."""
    d = tmp_path / name
    shutil.copytree(src, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["rope_theta"] = cfg.pop("rope_parameters")["rope_theta"]
    edit(cfg)
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def test_glm4_rotary_fraction_is_read_from_either_config_spelling_and_checked(fixtures, moelab, tmp_path):
    """GLM-4.5's Hub config.json (transformers 4.x) keeps partial_rotary_factor top-level,
    transformers 5 in rope_parameters; absent, Glm4MoeConfig uses 0.5. The 4.x spelling of the
    air fixture (0.25) gives transformers' logits; dropping the key (0.5) changes them; a
    factor outside (0, 1] is one line naming the field."""
    src = fixtures / "models" / "glm4_moe_air"
    ref = load_file(str(fixtures / "models" / "glm4_moe_air.ref.safetensors"))

    def variant(name, edit):
        return config_variant(src, tmp_path, name, edit)

    v4 = variant("v4", lambda c: c.update(partial_rotary_factor=0.25))
    want = split_ref(ref)
    got = moelab_logits(moelab, v4, ref, tmp_path)
    assert max((a - b).abs().max().item() for a, b in zip(want, got)) <= 1e-4
    unset = variant("unset", lambda c: None)
    got = moelab_logits(moelab, unset, ref, tmp_path)
    assert max((a - b).abs().max().item() for a, b in zip(want, got)) > 1e-3  # parity is ~2e-7
    bad = variant("bad", lambda c: c.update(partial_rotary_factor=1.5))
    proc = moelab("inspect", bad, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "config.json" in proc.stderr and "partial_rotary_factor" in proc.stderr


def test_minimax_m2_rotary_dim_of_the_hub_config_gives_transformers_logits(fixtures, moelab, tmp_path):
    """The Hub's config.json (written for transformers 4.x remote code) names `rotary_dim` and
    rope_theta top-level, no rope_parameters: read as partial_rotary_factor = rotary_dim /
    head_dim. Without rotary_dim the whole head rotates (logits change); an odd or too large
    rotary_dim is one line naming it."""
    src = fixtures / "models" / "minimax_m2"
    ref = load_file(str(fixtures / "models" / "minimax_m2.ref.safetensors"))

    def variant(name, edit):
        return config_variant(src, tmp_path, name, edit)

    want = split_ref(ref)
    got = moelab_logits(moelab, variant("hub", lambda c: None), ref, tmp_path)
    assert max((a - b).abs().max().item() for a, b in zip(want, got)) <= 1e-4
    got = moelab_logits(moelab, variant("full", lambda c: c.pop("rotary_dim")), ref, tmp_path)
    assert max((a - b).abs().max().item() for a, b in zip(want, got)) > 1e-3  # parity is ~2e-7
    for bad in (7, 32):
        proc = moelab("inspect", variant(f"bad{bad}", lambda c: c.update(rotary_dim=bad)), check=False)
        assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
        assert "config.json" in proc.stderr and "rotary_dim" in proc.stderr


@pytest.mark.parametrize("family,key,value", [
    ("minimax_m2", "scoring_func", "softmax"),      # the remote code's option; transformers: sigmoid only
    ("minimax_m2", "use_routing_bias", False),
    ("glm4_moe", "topk_method", "greedy"),          # GLM-4.5's router is noaux_tc only
    ("glm4_moe", "n_group", 3),                      # 16 experts do not split into 3 groups
    ("glm4_moe_lite", "topk_method", "greedy"),
    ("glm4_moe_lite", "partial_rotary_factor", 0.5),  # the latent attention rotates every rope channel
    ("ernie4_5_moe", "use_bias", True),              # no ERNIE-4.5 MoE checkpoint has biases
    ("ernie4_5_moe", "moe_layer_interval", 0),
    ("phimoe", "num_experts_per_tok", 4),            # sparsemixer routes to two experts
    ("phimoe", "router_jitter_noise", 1.5),
    ("llama4", "attention_chunk_size", None),        # layer_types still names chunked layers
    ("llama4", "partial_rotary_factor", 0.5),        # Llama-4 rotates whole heads
    ("llama4", "moe_layers", [0, 4]),                # no layer 4
    ("llama4", "no_rope_layers", [1, 0]),            # fewer entries than layers
    ("llama4", "num_experts_per_tok", 9),            # more than the 8 experts
    ("llama4", "moelab_skip_beta", [0.5, 0.5, 0, 0.5]),  # NAEE skipping compares softmax gates
    ("llama4", "moelab_compressed_experts", {"main": 1}),  # gates on the input, not the output
    ("qwen3", "layer_types", ["chunked_attention"] * 3),  # only Llama-4 implements chunked attention
])
def test_a_router_option_moelab_does_not_implement_is_refused_naming_the_field(family, key, value, fixtures, moelab,
                                                                                tmp_path):
    """Never a silently different router: one line naming config.json and the field."""
    d = tmp_path / family
    shutil.copytree(fixtures / "models" / family, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg[key] = value
    (d / "config.json").write_text(json.dumps(cfg))
    proc = moelab("inspect", d, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "config.json" in proc.stderr and key in proc.stderr


def test_multi_token_prediction_weights_are_skipped_as_transformers_skips_them(fixtures, moelab, tmp_path):
    """GLM-4.x, DeepSeek-V3 and ERNIE-4.5 checkpoints carry multi-token-prediction weights
    (layer num_hidden_layers; ERNIE's "mtp" tensors) that the causal LM does not use: moelab
    loads such a checkpoint with transformers' logits and does not write them into a pruned
    one (their experts would not match it). A family without them still refuses a stray tensor."""
    from safetensors.torch import save_file
    ref = load_file(str(fixtures / "models" / "glm4_moe_lite.ref.safetensors"))
    src = tmp_path / "with_mtp"
    shutil.copytree(fixtures / "models" / "glm4_moe_lite", src)
    tensors = load_file(str(src / "model.safetensors"))
    extra = {"model.layers.3.eh_proj.weight": torch.ones(64, 128),
             "model.layers.3.mlp.experts.0.gate_proj.weight": torch.ones(32, 64),
             "model.mtp_block.0.weight": torch.ones(4)}
    save_file({**tensors, **extra}, str(src / "model.safetensors"), metadata={"format": "pt"})
    got = moelab_logits(moelab, src, ref, tmp_path)
    assert max((a - b).abs().max().item() for a, b in zip(split_ref(ref), got)) <= 1e-4
    out = tmp_path / "pruned"
    prune(moelab, src, out, ["1:0,4", "2:1,5"])
    written = load_file(str(out / "model.safetensors"))
    assert not set(extra) & set(written) and "model.norm.weight" in written

    other = tmp_path / "mixtral_extra"
    shutil.copytree(fixtures / "models" / "mixtral", other)
    tensors = load_file(str(other / "model.safetensors"))
    save_file({**tensors, "model.layers.3.eh_proj.weight": torch.ones(4)}, str(other / "model.safetensors"),
              metadata={"format": "pt"})
    proc = moelab("forward", other, "--ids-json", write_ids_json(tmp_path / "ids.json", ref["input_ids"],
                                                                   ref["lengths"]),
                  "--out", tmp_path / "x.safetensors", check=False)
    assert proc.returncode != 0 and "model.layers.3.eh_proj.weight" in proc.stderr


def test_longrope_factor_lists_of_the_wrong_length_are_refused_naming_the_field(fixtures, moelab, tmp_path):
    d = tmp_path / "phimoe"
    shutil.copytree(fixtures / "models" / "phimoe", d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["rope_parameters"]["long_factor"] = cfg["rope_parameters"]["long_factor"][:-1]
    (d / "config.json").write_text(json.dumps(cfg))
    proc = moelab("inspect", d, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "config.json" in proc.stderr and "long_factor" in proc.stderr


def test_llama4_config_readings_and_the_switches_the_fixture_exercises(fixtures, moelab, tmp_path):
    """Llama-4's defaults: without no_rope_layers and layer_types, no_rope_layer_interval 2
    gives the fixture's NoPE layers and chunked RoPE layers (transformers' logits). Each of
    chunked attention, temperature tuning and the L2 q/k norm changes the logits when turned
    off (the fixture exercises them), and a multimodal config is refused in one line."""
    src = fixtures / "models" / "llama4"
    ref = load_file(str(fixtures / "models" / "llama4.ref.safetensors"))
    want = split_ref(ref)

    def variant(name, edit):
        d = tmp_path / name
        shutil.copytree(src, d)
        cfg = json.loads((d / "config.json").read_text())
        edit(cfg)
        (d / "config.json").write_text(json.dumps(cfg))
        return d

    def interval(c):
        del c["no_rope_layers"], c["layer_types"]
        c["no_rope_layer_interval"] = 2

    got = moelab_logits(moelab, variant("interval", interval), ref, tmp_path)
    assert max((a - b).abs().max().item() for a, b in zip(want, got)) <= 1e-4
    for name, edit in [("unchunked", lambda c: (c.pop("layer_types"), c.update(attention_chunk_size=None))),
                       ("no_temperature", lambda c: c.update(attn_temperature_tuning=False)),
                       ("no_qk_norm", lambda c: c.update(use_qk_norm=False))]:
        d = variant(name, edit)
        got = moelab_logits(moelab, d, ref, tmp_path)
        diff = max((a - b).abs().max().item() for a, b in zip(want, got))
        assert diff > 1e-3, name
        hf = hf_logits(hf_model(d, trust_remote_code=False), ref)  # and transformers agrees
        assert max((a - b).abs().max().item() for a, b in zip(hf, got)) <= 1e-4, name
    multimodal = tmp_path / "multimodal"
    multimodal.mkdir()
    text = json.loads((src / "config.json").read_text())
    (multimodal / "config.json").write_text(json.dumps(
        {"architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4", "text_config": text,
         "vision_config": {}}))
    proc = moelab("inspect", multimodal, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "config.json" in proc.stderr and "text_config" in proc.stderr


def test_llama4_gate_ratios_are_refused_in_one_line(fixtures, moelab, tmp_path):
    """NAEE's dynamic skipping thresholds come from softmax probabilities; Llama-4 gates by
    sigmoids of the logits, on the experts' input: the statistic is refused, not made up."""
    data = tmp_path / "cal.json"
    data.write_text(json.dumps({"input_ids": [[1 + (i * 7 + j * 3) % 500 for j in range(16)] for i in range(6)]}))
    proc = moelab("calibrate", fixtures / "models" / "llama4", "--data", data, "--seq-len", 16, "--collect",
                  "gate_ratios", "--out", tmp_path / "s.h5", check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr
    assert "gate_ratios" in errors[0] and "config.json" in errors[0]


def test_llama4_dense_outputs_and_merge_round_trip(fixtures, moelab, tmp_path):
    """The dense observation (HC-SMoE's every expert on every token) runs Llama-4's expert j on
    its input as it would see it, x * sigmoid(logit_j): equal to a Python recomputation from
    the inputs of transformers' MoE blocks. moelab merge on those statistics writes the fused
    [E, D, 2F] experts that transformers loads with moelab's logits."""
    import h5py
    import numpy as np

    src = fixtures / "models" / "llama4"
    rows = [[1 + (i * 7 + j * 3) % 500 for j in range(16)] for i in range(6)]
    data = tmp_path / "cal.json"
    data.write_text(json.dumps({"input_ids": rows}))
    moelab("calibrate", src, "--data", data, "--seq-len", 16, "--collect", "dense_outputs", "--out", tmp_path / "s.h5")
    model = hf_model(src, trust_remote_code=False)
    captured, hooks = {}, []
    for idx, layer in enumerate(model.model.layers):
        if hasattr(layer.feed_forward, "experts"):
            hooks.append(layer.feed_forward.register_forward_hook(
                lambda mod, inp, out, idx=idx: captured.setdefault(idx, []).append(inp[0].reshape(-1, inp[0].shape[-1]))))
    with torch.no_grad():
        model(input_ids=torch.tensor(rows))
    for h in hooks:
        h.remove()
    with h5py.File(tmp_path / "s.h5") as f:
        for idx, xs in captured.items():
            ff = model.model.layers[idx].feed_forward
            x = torch.cat(xs).double()
            gu, down = ff.experts.gate_up_proj.double(), ff.experts.down_proj.double()  # [E, D, 2F], [E, F, D]
            gates = torch.sigmoid(x @ ff.router.weight.double().T)  # [N, E]
            F = down.shape[1]
            want = []
            for e in range(gu.shape[0]):
                h = (x * gates[:, e : e + 1]) @ gu[e]
                want.append(((torch.nn.functional.silu(h[:, :F]) * h[:, F:]) @ down[e]).sum(0))
            want = torch.stack(want).detach().numpy()
            got = f[f"layer_{idx:03d}"]["dense_out_sum_ED"][:]
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max(), err_msg=f"layer {idx}")
    out = tmp_path / "merged"
    moelab("merge", src, "--stats", tmp_path / "s.h5", "--ratio", 0.25, "--out", out)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["num_local_experts"] == 6
    merged = load_file(str(out / "model.safetensors"))
    assert merged["model.layers.0.feed_forward.experts.gate_up_proj"].shape == (6, 64, 64)
    assert merged["model.layers.0.feed_forward.experts.down_proj"].shape == (6, 32, 64)
    ref = load_file(str(fixtures / "models" / "llama4.ref.safetensors"))
    hf = hf_logits(hf_model(out, trust_remote_code=True), ref)
    mine = moelab_logits(moelab, out, ref, tmp_path)
    worst = max((a - b).abs().max().item() for a, b in zip(hf, mine))
    print(f"[merge] llama4: max |logit diff| transformers vs moelab = {worst:.3g}")
    assert worst <= 1e-4
