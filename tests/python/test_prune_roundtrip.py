"""moelab prune -> transformers loads the result -> its logits equal moelab's own
logits for the pruned model, and the surviving experts are the right ones."""
import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from helpers import hf_logits, hf_model, moelab_logits, split_ref

DROPS = {0: [1, 5], 1: [2]}


def router_weight(model, layer):
    return model.model.layers[layer].mlp.gate.weight.detach()


@pytest.mark.parametrize("family", ["mixtral", "qwen3"])
def test_uneven_prune_loads_in_transformers_with_matching_logits(family, fixtures, moelab, tmp_path):
    src = fixtures / "models" / family
    out = tmp_path / "pruned"
    drops = [f"{layer}:{','.join(map(str, ex))}" for layer, ex in DROPS.items()]
    # qwen3's layer 1 is dense in the fixture: prune layers 0 and 2 there instead.
    if family == "qwen3":
        drops = ["0:1,5", "2:2"]
    args = ["prune", src, "--out", out]
    for d in drops:
        args += ["--drop", d]
    moelab(*args)

    cfg = json.loads((out / "config.json").read_text())
    counts = cfg["moelab_num_experts_per_layer"]
    full = 8 if family == "mixtral" else 10
    assert counts[0] == full - 2
    ref = load_file(str(fixtures / "models" / f"{family}.ref.safetensors"))
    pruned = hf_model(out, trust_remote_code=True)
    hf = hf_logits(pruned, ref)
    mine = moelab_logits(moelab, out, ref, tmp_path)
    for a, b in zip(hf, mine):
        assert (a - b).abs().max().item() <= 1e-4

    # The survivors are the original experts minus the dropped ones, in order.
    original = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    keep0 = [e for e in range(full) if e not in (1, 5)]
    assert torch.equal(router_weight(pruned, 0), router_weight(original, 0)[keep0])
    assert torch.equal(pruned.model.layers[0].mlp.experts.down_proj,
                       original.model.layers[0].mlp.experts.down_proj[keep0])
    # Pruning changes the model: its logits differ from the unpruned reference.
    assert max((a - r).abs().max().item() for a, r in zip(hf, split_ref(ref))) > 1e-3


def test_uniform_prune_loads_with_stock_transformers(fixtures, moelab, tmp_path):
    src = fixtures / "models" / "mixtral"
    out = tmp_path / "pruned"
    moelab("prune", src, "--out", out, "--drop", "0:3", "--drop", "1:0", "--drop", "2:7")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["num_local_experts"] == 7
    assert "auto_map" not in cfg and "moelab_num_experts_per_layer" not in cfg
    ref = load_file(str(fixtures / "models" / "mixtral.ref.safetensors"))
    hf = hf_logits(hf_model(out, trust_remote_code=False), ref)
    mine = moelab_logits(moelab, out, ref, tmp_path)
    for a, b in zip(hf, mine):
        assert (a - b).abs().max().item() <= 1e-4


def test_failed_prune_writes_nothing(fixtures, moelab, tmp_path):
    out = tmp_path / "pruned"
    proc = moelab("prune", fixtures / "models" / "mixtral", "--out", out, "--drop", "0:99", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "expert 99" in proc.stderr
    assert not out.exists()
    assert not list(tmp_path.glob("pruned*"))
