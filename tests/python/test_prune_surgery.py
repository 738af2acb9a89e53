"""Pruning as checkpoint surgery (core/models/checkpoint_surgery.h): the pruned checkpoint's
kept tensors are byte-identical to the input's, transformers loads it with the same
logits as the in-memory path (--in-memory: load, prune, save), and a sharded bfloat16
checkpoint is pruned with a peak memory far below its size."""
import json
import resource

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from bf16_checkpoint import write_bf16_mixtral
from helpers import hf_logits, hf_model, peak_rss_kib, prune, same_bytes, tensors

# family fixture -> drops (uneven: modeling_moelab.py and trust_remote_code)
DROPS = {
    "mixtral": ["0:1,5", "1:2"],
    "mixtral_fused": ["0:1,5", "1:2"],   # transformers 5 fused [E, ...] experts, sliced
    "qwen3": ["0:1,5", "2:2"],
    "qwen2_moe": ["0:1,5", "2:2"],
    "olmoe": ["0:1,5,9", "1:2"],
    "deepseek_v3": ["1:0,4,8,12", "2:1,5,10,15"],  # groups kept; correction bias sliced
    "deepseek_v2": ["1:1,5", "2:2"],
    "gpt_oss": ["0:1,5", "3:2"],                   # router bias, fused experts and their biases
    "glm4_moe": ["1:1,5", "2:2"],                  # uneven: groups given up, correction bias sliced
    "glm4_moe_air": ["0:1,5", "2:2"],              # fused bf16 experts
    "minimax_m2": ["0:1,5", "2:2"],                # correction bias of the MoE block sliced
    "glm4_moe_lite": ["1:1,5", "2:2"],             # MLA; groups given up
    "ernie4_5_moe": ["1:1,5", "2:2"],              # [1, E] correction bias sliced along its second axis
    "phimoe": ["0:1,5", "2:2"],                    # sparsemixer, LayerNorm
    "llama4": ["0:1,5", "3:2"],                    # fused [E, D, 2F] experts, layer 2 dense
    "qwen3_next": ["0:1,5", "3:2"],                # Gated DeltaNet tensors copied as stored
}


def parse(drops):
    out = {}
    for d in drops:
        layer, experts = d.split(":")
        out[int(layer)] = [int(e) for e in experts.split(",")]
    return out


def source_of(name, dropped, num_experts):
    """The input tensor an output tensor comes from, and the kept rows (None: whole)."""
    parts = name.split(".")
    if len(parts) > 4 and parts[0] == "model" and parts[1] == "layers" and int(parts[2]) in dropped:
        layer = int(parts[2])
        keep = [e for e in range(num_experts) if e not in dropped[layer]]
        if "experts" in parts:
            i = parts.index("experts")
            if parts[i + 1].isdigit():  # per-expert: renumbered
                parts[i + 1] = str(keep[int(parts[i + 1])])
                return ".".join(parts), None
            return name, keep  # fused [E, ...], gpt-oss biases, theta
        if parts[-2] in ("gate", "router") or name.endswith("e_score_correction_bias"):
            return name, keep
    return name, None


@pytest.mark.parametrize("family", list(DROPS))
def test_kept_tensors_are_the_inputs_bytes_and_logits_match_the_in_memory_path(family, fixtures, moelab, tmp_path):
    src = fixtures / "models" / family
    cfg = json.loads((src / "config.json").read_text())
    E = next(cfg[k] for k in ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts") if k in cfg)
    dropped = parse(DROPS[family])
    surgery, memory = tmp_path / "surgery", tmp_path / "memory"
    prune(moelab, src, surgery, DROPS[family])
    prune(moelab, src, memory, DROPS[family], "--in-memory")

    inp, out = tensors(src), tensors(surgery)
    used = set()
    for name, t in out.items():
        origin, keep = source_of(name, dropped, E)
        assert origin in inp, name
        want = (inp[origin] if keep is None
                else inp[origin][:, keep] if name.endswith("moe_statics.e_score_correction_bias")  # ERNIE-4.5 [1, E]
                else inp[origin][keep])
        assert same_bytes(t, want), name
        used.add(origin)
    # Every input tensor not of a dropped expert made it to the output.
    for name in inp:
        if name not in used:
            parts = name.split(".")
            i = parts.index("experts")
            assert int(parts[2]) in dropped and int(parts[i + 1]) in dropped[int(parts[2])], name

    # The same config as the in-memory path writes, but for the dtype, which surgery
    # leaves as the input has it (the in-memory path always writes the one it saved in).
    ck_s, ck_m = (json.loads((d / "config.json").read_text()) for d in (surgery, memory))
    for c in (ck_s, ck_m):
        c.pop("dtype", None), c.pop("torch_dtype", None)
    assert ck_s == ck_m
    ref = load_file(str(fixtures / "models" / f"{family}.ref.safetensors"))
    a = hf_logits(hf_model(surgery, trust_remote_code=True), ref)
    b = hf_logits(hf_model(memory, trust_remote_code=True), ref)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_save_dtype_converts_tensor_by_tensor(fixtures, moelab, tmp_path):
    src = fixtures / "models" / "mixtral"
    out = tmp_path / "bf16"
    prune(moelab, src, out, ["0:1"], "--save-dtype", "bfloat16")
    got, inp = tensors(out), tensors(src)
    assert all(t.dtype == torch.bfloat16 for t in got.values())
    assert torch.equal(got["model.embed_tokens.weight"], inp["model.embed_tokens.weight"].to(torch.bfloat16))
    cfg = json.loads((out / "config.json").read_text())
    assert cfg.get("dtype", cfg.get("torch_dtype")) == "bfloat16"


def test_a_sharded_bf16_checkpoint_is_pruned_in_a_fraction_of_its_size(moelab_bin, tmp_path):
    src = tmp_path / "bf16"
    size = write_bf16_mixtral(src)  # ~400 MB in 4 shards
    baseline = peak_rss_kib([moelab_bin, "inspect", src]) * 1024  # libtorch and headers, no weights
    out = tmp_path / "pruned"
    drops = [f"{l}:{','.join(str(e) for e in range(0, 16, 2))}" for l in range(8)]  # half of every layer
    args = [moelab_bin, "prune", src, "--out", out]
    for d in drops:
        args += ["--drop", d]
    peak = peak_rss_kib(args) * 1024
    print(f"[prune surgery] checkpoint {size / 2**20:.0f} MiB: peak RSS {peak / 2**20:.0f} MiB "
          f"(moelab inspect {baseline / 2**20:.0f} MiB)")
    # Holding the model would be `size` (bf16) or twice it (float32); surgery holds about
    # one tensor (here 8 MiB) above what the binary needs anyway.
    assert peak - baseline < size / 8, (peak, baseline, size)

    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == sorted(p.name for p in src.glob("model-*.safetensors"))
    got = tensors(out)
    assert set(index["weight_map"]) == set(got)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in got.values())
    with safe_open(str(src / "model-00002-of-00004.safetensors"), "pt") as h:
        # layer 2 keeps its odd experts: expert 3 is now expert 1
        assert same_bytes(got["model.layers.2.block_sparse_moe.experts.1.w2.weight"],
                          h.get_tensor("model.layers.2.block_sparse_moe.experts.3.w2.weight"))
        assert same_bytes(got["model.layers.2.block_sparse_moe.gate.weight"],
                          h.get_tensor("model.layers.2.block_sparse_moe.gate.weight")[1::2])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["num_local_experts"] == 8 and cfg["torch_dtype"] == "bfloat16"
    assert "moelab_num_experts_per_layer" not in cfg
