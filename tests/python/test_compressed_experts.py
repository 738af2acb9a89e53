"""Compressed experts (arXiv 2503.00634): moelab compress -> a model whose MoE blocks run only a
token's k_m highest-gated experts, modulated by the vectors of the other k - k_m.

Default variant "official": checked against a re-implementation of the authors' block
(github.com/neilwen987/Compressed-Experts-ts, modeling/modeling_olmoe.py,
OlmoeSparseCompressedMoeBlock + OlmoeCEMLP) inside transformers' model, for the forward (one
process and expert parallelism) and for the gradient of c1, c2, c3 under `moelab finetune
--params compressed`; and checked to differ from the two earlier misreadings (main gates
renormalised over the main experts; no vector on the intermediate activation).
Variant "moelab-v1" (moelab's first reading): h * theta, main gates renormalised; checked
against its formula, and a config written before variants existed still loads as it."""
import functools
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers import SEQ_LEN, hf_model, input_error, moe_layers, moelab_forward, seeded_ids

# (family fixture, main experts k_m): OLMoE's fixture has top-4, so 2 main + 2 auxiliary.
FAMILIES = (("mixtral", 1), ("qwen3", 1), ("olmoe", 2))


def official_block(mlp, ces, n_main, renorm_main=False, c2_ones=False):
    """OlmoeSparseCompressedMoeBlock.forward, line by line, on transformers' router (mlp.gate: the
    softmax, top-k and norm_topk_prob of the official code) and fused expert weights. ces [E, 3, W].
    Where the official code has W = D and c2 = ces[:, 1, :intermediate_size] (F <= D), moelab's
    reading takes c1, c3 as the first D entries so that F > D (Mixtral) works too.
    renorm_main / c2_ones: the two misreadings, for the tests that must tell them apart."""

    def forward(hidden_states):
        batch_size, sequence_length, hidden_dim = hidden_states.shape
        hidden_states = hidden_states.view(-1, hidden_dim)
        _, routing_weights, selected_experts = mlp.gate(hidden_states)
        top_k = selected_experts.shape[1]
        n_ce = top_k - n_main
        gate_up, down = mlp.experts.gate_up_proj, mlp.experts.down_proj
        num_experts, F = gate_up.shape[0], down.shape[2]
        final_hidden_states = torch.zeros_like(hidden_states)
        expert_mask = torch.nn.functional.one_hot(selected_experts[:, :n_main], num_classes=num_experts).permute(2, 1, 0)
        for expert_idx in range(num_experts):
            idx, top_x = torch.where(expert_mask[expert_idx])
            if top_x.numel() == 0:
                continue
            embed_idx = selected_experts[top_x][:, -n_ce:]
            selected_ce = ces[embed_idx]
            routing_weights_expanded = routing_weights[top_x, n_main:top_k]
            normalizer = routing_weights[top_x, n_main:top_k, None].sum(dim=1)
            normalized_weights = (routing_weights_expanded / normalizer).unsqueeze(-1).unsqueeze(-1)
            normalized_ce = (selected_ce * normalized_weights).sum(dim=1)
            ce1 = normalized_ce[:, 0, :hidden_dim]
            ce2 = normalized_ce[:, 1, :F]
            ce3 = normalized_ce[:, 2, :hidden_dim]
            if c2_ones:
                ce2 = torch.ones_like(ce2)
            # OlmoeCEMLP.forward: down_proj(act_fn(gate_proj(x * e1)) * up_proj(x * e3) * e2)
            x = hidden_states[top_x]
            gate = torch.nn.functional.linear(x * ce1, gate_up[expert_idx, :F])
            up = torch.nn.functional.linear(x * ce3, gate_up[expert_idx, F:])
            y = torch.nn.functional.linear(mlp.experts.act_fn(gate) * up * ce2, down[expert_idx])
            weight = routing_weights[top_x, idx, None]
            if renorm_main:
                weight = weight / routing_weights[top_x, :n_main].sum(dim=1, keepdim=True)
            final_hidden_states.index_add_(0, top_x, y * weight)
        return final_hidden_states.reshape(batch_size, sequence_length, hidden_dim)

    return forward


def moelab_v1_block(mlp, theta, k, k_main):
    """moelab-v1 by hand, token by token: h * theta, main gates renormalised over the main experts."""

    def forward(hidden):
        B, T, D = hidden.shape
        x = hidden.reshape(-1, D)
        probs = torch.softmax(torch.nn.functional.linear(x, mlp.gate.weight).float(), -1)
        w, top = torch.topk(probs, k, -1)
        gu, dn = mlp.experts.gate_up_proj, mlp.experts.down_proj
        F = dn.shape[2]
        rows = []
        for t in range(x.shape[0]):
            aux = w[t, k_main:] / w[t, k_main:].sum()
            th = sum(aux[i] * theta[top[t, k_main + i]] for i in range(k - k_main))
            xt = x[t] * th
            main = w[t, :k_main] / w[t, :k_main].sum()
            out = torch.zeros(D, dtype=x.dtype)
            for j in range(k_main):
                e = int(top[t, j])
                h = gu[e] @ xt
                out = out + main[j] * (dn[e] @ (torch.nn.functional.silu(h[:F]) * h[F:]))
            rows.append(out)
        return torch.stack(rows).reshape(B, T, D)

    return forward


def reference_model(model_dir, vectors, k_main, variant="official", **misreading):
    model = hf_model(model_dir)
    for i in moe_layers(model):
        mlp = model.model.layers[i].mlp
        if variant == "official":
            mlp.forward = official_block(mlp, vectors[i], k_main, **misreading)
        else:
            mlp.forward = moelab_v1_block(mlp, vectors[i], model.config.num_experts_per_tok, k_main)
    return model


VECTOR_SUFFIX = {"official": "mlp.ces", "moelab-v1": "mlp.experts.theta"}


def compress_with_random_vectors(moelab, model, out, k_main=1, seed=3, variant="official"):
    """moelab compress, then the vectors replaced by 1 + 0.5 N(0, 1) (ones would hide the
    differences between readings); returns {layer: vectors}."""
    moelab("compress", model, "--main", k_main, "--variant", variant, "--out", out)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["moelab_compressed_experts"] == {"main": k_main, "variant": variant}
    weights = load_file(str(out / "model.safetensors"))
    g = torch.Generator().manual_seed(seed)
    vectors = {}
    for name in list(weights):
        if name.endswith(VECTOR_SUFFIX[variant]):
            assert torch.equal(weights[name], torch.ones_like(weights[name]))  # compress writes ones
            weights[name] = 1 + 0.5 * torch.randn(weights[name].shape, generator=g)
            vectors[int(name.split(".")[2])] = weights[name]
    assert vectors
    assert not any(n.endswith(VECTOR_SUFFIX["moelab-v1" if variant == "official" else "official"]) for n in weights)
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    return vectors


@pytest.mark.parametrize("family,k_main", FAMILIES)
def test_forward_equals_the_official_block_and_not_the_misreadings(fixtures, moelab, tmp_path, family, k_main):
    out = tmp_path / family
    ces = compress_with_random_vectors(moelab, fixtures / "models" / family, out, k_main)
    cfg = json.loads((out / "config.json").read_text())
    D = cfg["hidden_size"]
    F = cfg.get("moe_intermediate_size") or cfg["intermediate_size"]
    assert all(v.shape == (v.shape[0], 3, max(D, F)) for v in ces.values())
    ids = seeded_ids(n=3, seed=21)
    mine, _ = moelab_forward(moelab, out, ids, tmp_path)
    with torch.no_grad():
        ref = reference_model(out, ces, k_main)(input_ids=ids).logits
        renorm = reference_model(out, ces, k_main, renorm_main=True)(input_ids=ids).logits
        no_c2 = reference_model(out, ces, k_main, c2_ones=True)(input_ids=ids).logits
    err = (mine - ref).abs().max().item()
    d_renorm, d_no_c2 = (mine - renorm).abs().max().item(), (mine - no_c2).abs().max().item()
    print(f"{family}: max |moelab - official| = {err:.2e}, logits scale {ref.abs().max().item():.2f}; "
          f"vs renormalised main gates {d_renorm:.2e}, vs c2 = 1 {d_no_c2:.2e}")
    assert err <= 1e-5, (family, err)
    # Either misreading reintroduced moves the logits 100x beyond that tolerance.
    assert d_renorm > 1e-3, family
    assert d_no_c2 > 1e-3, family
    # Expert parallelism: the vectors are replicated, aux slots never leave the tokens' rank,
    # the rows x*c1 | x*c3 | c2 travel to the experts' rank.
    two, _ = moelab_forward(moelab, out, ids, tmp_path, "--ranks", 2)
    err2 = (two - ref).abs().max().item()
    print(f"{family} --ranks 2: max |moelab - official| = {err2:.2e}")
    assert err2 <= 1e-5, (family, err2)


def test_moelab_v1_variant_and_configs_from_before_variants(fixtures, moelab, tmp_path):
    for family in ("mixtral", "qwen3"):
        out = tmp_path / family
        thetas = compress_with_random_vectors(moelab, fixtures / "models" / family, out, variant="moelab-v1")
        ids = seeded_ids(n=3, seed=21)
        mine, _ = moelab_forward(moelab, out, ids, tmp_path)
        with torch.no_grad():
            ref = reference_model(out, thetas, 1, variant="moelab-v1")(input_ids=ids).logits
        assert (mine - ref).abs().max().item() <= 1e-4, family
        two, _ = moelab_forward(moelab, out, ids, tmp_path, "--ranks", 2)
        assert (two - mine).abs().max().item() <= 1e-5, family
        plain, _ = moelab_forward(moelab, fixtures / "models" / family, ids, tmp_path)
        assert (plain - mine).abs().max().item() > 1e-3, family
        # A config written before variants existed: {"main": k_m} and theta -> moelab-v1.
        cfg_path = out / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["moelab_compressed_experts"] = {"main": 1}
        cfg_path.write_text(json.dumps(cfg))
        old, _ = moelab_forward(moelab, out, ids, tmp_path)
        assert torch.equal(old, mine), family


def test_active_parameters_and_expert_flops_drop_with_the_aux_experts(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "mixtral"

    def inspect(d):
        return json.loads(moelab("inspect", d, "--json").stdout)

    base = inspect(model)
    k, k_main, D = base["experts_per_token"], 1, base["hidden_size"]
    moe = [l for l in base["layers"] if l["prunable"]]
    E = sum(l.get("num_experts", l.get("experts", 0)) for l in moe)
    routed_active = base["params"]["active_per_token"] - (base["params"]["total"] - base["params"]["routed_experts"])
    # The vectors (official [E, 3, max(D, F)], moelab-v1 [E, D] per layer) are counted with the routers.
    F = json.loads((model / "config.json").read_text())["intermediate_size"]
    for variant, per_expert in (("official", 3 * max(D, F)), ("moelab-v1", D)):
        moelab("compress", model, "--main", k_main, "--variant", variant, "--out", tmp_path / variant)
        comp = inspect(tmp_path / variant)
        vec = sum(t.numel() for n, t in load_file(str(tmp_path / variant / "model.safetensors")).items()
                  if n.endswith(VECTOR_SUFFIX[variant]))
        assert vec == E * per_expert, variant
        assert comp["params"]["routers"] == base["params"]["routers"] + vec
        assert comp["params"]["active_per_token"] == base["params"]["active_per_token"] - routed_active * (k - k_main) // k + vec
    res = tmp_path / "r.jsonl"
    flops = []
    for d in (model, tmp_path / "official"):
        moelab("eval", d, "--efficiency", "--bench-seq-len", 16, "--bench-repeats", 1, "--results", res)
        flops.append(json.loads(res.read_text().splitlines()[-1])["metrics"]["expert_flops_per_token"])
    assert flops[1] * k == flops[0] * k_main


def finetune_grads(moelab, model_dir, ids, tmp_path, *extra):
    (tmp_path / "d.json").write_text(json.dumps({"input_ids": ids.tolist()}))
    tuned, grads = tmp_path / ("tuned" + "".join(map(str, extra))), tmp_path / ("g" + "".join(map(str, extra)) + ".safetensors")
    moelab(*extra, "finetune", model_dir, "--data", tmp_path / "d.json", "--seq-len", SEQ_LEN, "--steps", 1,
           "--batch-size", 4, "--micro-batch", 2, "--lr", 1e-2, "--min-lr", 1e-2, "--params", "compressed",
           "--save-grads", grads, "--out", tuned)
    return tuned, load_file(str(grads))


def reference_grads(model_dir, vectors, k_main, ids, variant="official"):
    """Autograd through the reference block, the vectors the only leaves."""
    leaves = {i: t.clone().requires_grad_(True) for i, t in vectors.items()}
    model = reference_model(model_dir, leaves, k_main, variant)
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.enable_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[:, :-1].float(), -1)
        (-logp.gather(-1, ids[:, 1:, None]).sum() / ids[:, 1:].numel()).backward()
    return {i: leaf.grad for i, leaf in leaves.items()}


@pytest.mark.parametrize("family,k_main", (("mixtral", 1), ("olmoe", 2)))
def test_finetune_compressed_trains_c1_c2_c3_with_the_reference_gradient(fixtures, moelab, tmp_path, family, k_main):
    out = tmp_path / "c"
    ces = compress_with_random_vectors(moelab, fixtures / "models" / family, out, k_main)
    ids = torch.randint(1, 512, (4, SEQ_LEN), generator=torch.Generator().manual_seed(21))
    tuned, grads = finetune_grads(moelab, out, ids, tmp_path)
    before, after = load_file(str(out / "model.safetensors")), load_file(str(tuned / "model.safetensors"))
    assert before.keys() == after.keys()
    for name in before:
        if name.endswith("mlp.ces"):
            assert not torch.equal(before[name], after[name]), name
        else:
            assert torch.equal(before[name], after[name]), name
    assert sorted(grads) == sorted(f"layers.{i}.ces" for i in ces)
    cfg = json.loads((out / "config.json").read_text())
    D = cfg["hidden_size"]
    F = cfg.get("moe_intermediate_size") or cfg["intermediate_size"]
    want = reference_grads(out, ces, k_main, ids)
    for i, w in want.items():
        got = grads[f"layers.{i}.ces"]
        # Gradients reach all three vectors (c1 and c3 over D entries, c2 over F), nothing else.
        for row, width in ((0, D), (1, F), (2, D)):
            assert got[:, row, :width].abs().max().item() > 0, (i, row)
            assert torch.count_nonzero(got[:, row, width:]) == 0, (i, row)
        scale = w.abs().max().item()
        assert (got - w).abs().max().item() <= 1e-5 * scale, (i, (got - w).abs().max().item(), scale)
    # Expert parallelism: the same gradient from two ranks.
    _, two = finetune_grads(moelab, out, ids, tmp_path, "--ranks", 2)
    for name, g in grads.items():
        assert (two[name] - g).abs().max().item() <= 1e-5 * g.abs().max().item(), name


def test_finetune_compressed_moelab_v1_trains_theta_with_the_reference_gradient(fixtures, moelab, tmp_path):
    out = tmp_path / "c"
    thetas = compress_with_random_vectors(moelab, fixtures / "models" / "mixtral", out, variant="moelab-v1")
    ids = torch.randint(1, 512, (4, SEQ_LEN), generator=torch.Generator().manual_seed(21))
    tuned, grads = finetune_grads(moelab, out, ids, tmp_path)
    before, after = load_file(str(out / "model.safetensors")), load_file(str(tuned / "model.safetensors"))
    for name in before:
        assert torch.equal(before[name], after[name]) != name.endswith("mlp.experts.theta"), name
    assert sorted(grads) == sorted(f"layers.{i}.experts.theta" for i in thetas)
    for i, w in reference_grads(out, thetas, 1, ids, "moelab-v1").items():
        got, scale = grads[f"layers.{i}.experts.theta"], w.abs().max().item()
        assert scale > 0
        assert (got - w).abs().max().item() <= 1e-5 * scale, (i, (got - w).abs().max().item(), scale)


def test_bad_inputs_are_one_line_errors(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "mixtral"

    err = functools.partial(input_error, moelab)

    for bad in (0, 2, -1):
        assert "--main" in err("compress", model, "--main", bad, "--out", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    # Vectors in the weights without the config key.
    moelab("compress", model, "--main", 1, "--out", tmp_path / "c")
    cfg_path = tmp_path / "c" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    main = cfg.pop("moelab_compressed_experts")
    assert main == {"main": 1, "variant": "official"}
    cfg_path.write_text(json.dumps(cfg))
    msg = err("inspect", tmp_path / "c")
    assert "moelab_compressed_experts" in msg and "mlp.ces" in msg, msg
    # A config key out of range (main >= k), malformed, or an unknown variant names config.json.
    for bad in ({"main": 2}, {"main": 0}, {"mian": 1}, 1, {"main": 1, "variant": "v2"}, {"main": 1, "variant": 1}):
        cfg["moelab_compressed_experts"] = bad
        cfg_path.write_text(json.dumps(cfg))
        msg = err("inspect", tmp_path / "c")
        assert "config.json" in msg and "moelab_compressed_experts" in msg, msg
    # The official vectors under a moelab-v1 config (e.g. "variant" dropped by hand): refused.
    cfg["moelab_compressed_experts"] = {"main": 1}
    cfg_path.write_text(json.dumps(cfg))
    msg = err("inspect", tmp_path / "c")
    assert "variant" in msg and "mlp.ces" in msg and "experts.theta" in msg, msg
    cfg["moelab_compressed_experts"] = main
    cfg_path.write_text(json.dumps(cfg))
    # --params compressed on an uncompressed model.
    (tmp_path / "d.json").write_text(json.dumps({"input_ids": [[1, 2, 3, 4]]}))
    assert "compressed" in err("finetune", model, "--data", tmp_path / "d.json", "--seq-len", 4, "--steps", 1,
                               "--params", "compressed", "--out", tmp_path / "t")
    # Without the vectors in the weights a compressed config loads with ones.
    w = load_file(str(tmp_path / "c" / "model.safetensors"))
    save_file({n: t for n, t in w.items() if not n.endswith(".ces")}, str(tmp_path / "c" / "model.safetensors"),
              metadata={"format": "pt"})
    moelab("inspect", tmp_path / "c")


@pytest.mark.parametrize("variant", ("official", "moelab-v1"))
def test_pruning_drops_the_vector_rows_of_dropped_experts(fixtures, moelab, tmp_path, variant):
    vectors = compress_with_random_vectors(moelab, fixtures / "models" / "mixtral", tmp_path / "c", variant=variant)
    moelab("prune", tmp_path / "c", "--drop", "0:1,5", "--out", tmp_path / "p")
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    assert cfg["moelab_compressed_experts"] == {"main": 1, "variant": variant}
    w = load_file(str(tmp_path / "p" / "model.safetensors"))
    keep = [e for e in range(8) if e not in (1, 5)]
    name = "model.layers.{}." + VECTOR_SUFFIX[variant]
    assert torch.equal(w[name.format(0)], vectors[0][keep])
    assert torch.equal(w[name.format(1)], vectors[1])
