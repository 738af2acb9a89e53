"""Compressed experts (arXiv 2503.00634): moelab compress -> a model whose MoE blocks run only a
token's k_m highest-gated experts, on h * theta with theta = the aux experts' theta_i weighted by
their renormalised gates, and the main gates renormalised over the main experts. Checked against
the formula written by hand inside transformers' model (in place of its MoE blocks), for the
forward and for the theta gradient of `moelab finetune --params compressed`."""
import json

import torch
from safetensors.torch import load_file, save_file

from test_gradient_easyep_naee import load, moe_layers
from test_naee_skipping import moelab_forward, token_ids

SEQ_LEN = 16


def compressed_block(mlp, theta, k, k_main):
    """The compressed MoE block by hand, token by token."""

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


def reference_model(model_dir, thetas, k_main):
    model = load(model_dir)
    for i in moe_layers(model):
        mlp = model.model.layers[i].mlp
        mlp.forward = compressed_block(mlp, thetas[i], model.config.num_experts_per_tok, k_main)
    return model


def compress_with_random_theta(moelab, model, out, k_main=1, seed=3):
    moelab("compress", model, "--main", k_main, "--out", out)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["moelab_compressed_experts"] == {"main": k_main}
    weights = load_file(str(out / "model.safetensors"))
    g = torch.Generator().manual_seed(seed)
    thetas = {}
    for name in list(weights):
        if name.endswith("mlp.experts.theta"):
            assert torch.equal(weights[name], torch.ones_like(weights[name]))  # compress writes ones
            weights[name] = 1 + 0.5 * torch.randn(weights[name].shape, generator=g)
            thetas[int(name.split(".")[2])] = weights[name]
    assert thetas
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    return thetas


def test_forward_equals_the_formula_on_transformers_weights(fixtures, moelab, tmp_path):
    for family in ("mixtral", "qwen3"):
        out = tmp_path / family
        thetas = compress_with_random_theta(moelab, fixtures / "models" / family, out)
        ids = token_ids(n=3)
        mine, _ = moelab_forward(moelab, out, ids, tmp_path)
        with torch.no_grad():
            ref = reference_model(out, thetas, 1)(input_ids=ids).logits
        assert (mine - ref).abs().max().item() <= 1e-4, family
        # Expert parallelism: theta is replicated, aux slots never leave the tokens' rank.
        two, _ = moelab_forward(moelab, out, ids, tmp_path, "--ranks", 2)
        assert (two - mine).abs().max().item() <= 1e-5, family
        plain, _ = moelab_forward(moelab, fixtures / "models" / family, ids, tmp_path)
        assert (plain - mine).abs().max().item() > 1e-3, family


def test_active_parameters_and_expert_flops_drop_with_the_aux_experts(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "mixtral"
    moelab("compress", model, "--main", 1, "--out", tmp_path / "c")

    def inspect(d):
        return json.loads(moelab("inspect", d, "--json").stdout)

    base, comp = inspect(model), inspect(tmp_path / "c")
    k, k_main, D = base["experts_per_token"], 1, base["hidden_size"]
    moe = [l for l in base["layers"] if l["prunable"]]
    E = sum(l.get("num_experts", l.get("experts", 0)) for l in moe)
    routed_active = base["params"]["active_per_token"] - (base["params"]["total"] - base["params"]["routed_experts"])
    # Active: the routed-expert share drops by (k - k_m)/k; theta (E x D per layer) is counted with the routers.
    assert comp["params"]["routers"] == base["params"]["routers"] + E * D
    assert comp["params"]["active_per_token"] == base["params"]["active_per_token"] - routed_active * (k - k_main) // k + E * D
    res = tmp_path / "r.jsonl"
    flops = []
    for d in (model, tmp_path / "c"):
        moelab("eval", d, "--efficiency", "--bench-seq-len", 16, "--bench-repeats", 1, "--results", res)
        flops.append(json.loads(res.read_text().splitlines()[-1])["metrics"]["expert_flops_per_token"])
    assert flops[1] * k == flops[0] * k_main


def test_finetune_compressed_trains_only_theta_with_the_reference_gradient(fixtures, moelab, tmp_path):
    out = tmp_path / "c"
    thetas = compress_with_random_theta(moelab, fixtures / "models" / "mixtral", out)
    g = torch.Generator().manual_seed(21)
    ids = torch.randint(1, 512, (4, SEQ_LEN), generator=g)
    (tmp_path / "d.json").write_text(json.dumps({"input_ids": ids.tolist()}))
    moelab("finetune", out, "--data", tmp_path / "d.json", "--seq-len", SEQ_LEN, "--steps", 1, "--batch-size", 4,
           "--micro-batch", 2, "--lr", 1e-2, "--min-lr", 1e-2, "--params", "compressed", "--save-grads", tmp_path / "g.safetensors",
           "--out", tmp_path / "tuned")
    before, after = load_file(str(out / "model.safetensors")), load_file(str(tmp_path / "tuned" / "model.safetensors"))
    assert before.keys() == after.keys()
    for name in before:
        if name.endswith("mlp.experts.theta"):
            assert not torch.equal(before[name], after[name]), name
        else:
            assert torch.equal(before[name], after[name]), name
    grads = load_file(str(tmp_path / "g.safetensors"))
    assert sorted(grads) == sorted(f"layers.{i}.experts.theta" for i in thetas)
    # Reference: autograd through the hand-written formula, theta the only leaf.
    leaves = {i: t.clone().requires_grad_(True) for i, t in thetas.items()}
    model = reference_model(out, leaves, 1)
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.enable_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[:, :-1].float(), -1)
        (-logp.gather(-1, ids[:, 1:, None]).sum() / ids[:, 1:].numel()).backward()
    for i, leaf in leaves.items():
        want, got = leaf.grad, grads[f"layers.{i}.experts.theta"]
        scale = want.abs().max().item()
        assert scale > 0
        assert (got - want).abs().max().item() <= 1e-5 * scale, (i, (got - want).abs().max().item(), scale)


def test_bad_inputs_are_one_line_errors(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "mixtral"

    def err(*args):
        proc = moelab(*args, check=False)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().count("\n") == 0, proc.stderr
        return proc.stderr

    for bad in (0, 2, -1):
        assert "--main" in err("compress", model, "--main", bad, "--out", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    # theta in the weights without the config key.
    moelab("compress", model, "--main", 1, "--out", tmp_path / "c")
    cfg_path = tmp_path / "c" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    main = cfg.pop("moelab_compressed_experts")
    cfg_path.write_text(json.dumps(cfg))
    msg = err("inspect", tmp_path / "c")
    assert "moelab_compressed_experts" in msg and "theta" in msg, msg
    # A config key out of range (main >= k) or malformed names config.json.
    for bad in ({"main": 2}, {"main": 0}, {"mian": 1}, 1):
        cfg["moelab_compressed_experts"] = bad
        cfg_path.write_text(json.dumps(cfg))
        msg = err("inspect", tmp_path / "c")
        assert "config.json" in msg and "moelab_compressed_experts" in msg, msg
    cfg["moelab_compressed_experts"] = main
    cfg_path.write_text(json.dumps(cfg))
    # --params compressed on an uncompressed model.
    (tmp_path / "d.json").write_text(json.dumps({"input_ids": [[1, 2, 3, 4]]}))
    assert "compressed" in err("finetune", model, "--data", tmp_path / "d.json", "--seq-len", 4, "--steps", 1,
                               "--params", "compressed", "--out", tmp_path / "t")
    # Without theta in the weights a compressed config loads with theta = ones: the top-1 model.
    w = load_file(str(tmp_path / "c" / "model.safetensors"))
    save_file({n: t for n, t in w.items() if not n.endswith(".theta")}, str(tmp_path / "c" / "model.safetensors"),
              metadata={"format": "pt"})
    moelab("inspect", tmp_path / "c")


def test_pruning_drops_the_theta_rows_of_dropped_experts(fixtures, moelab, tmp_path):
    thetas = compress_with_random_theta(moelab, fixtures / "models" / "mixtral", tmp_path / "c")
    moelab("prune", tmp_path / "c", "--drop", "0:1,5", "--out", tmp_path / "p")
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    assert cfg["moelab_compressed_experts"] == {"main": 1}
    w = load_file(str(tmp_path / "p" / "model.safetensors"))
    keep = [e for e in range(8) if e not in (1, 5)]
    assert torch.equal(w["model.layers.0.mlp.experts.theta"], thetas[0][keep])
    assert torch.equal(w["model.layers.1.mlp.experts.theta"], thetas[1])
