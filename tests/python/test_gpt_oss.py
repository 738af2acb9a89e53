"""gpt-oss (transformers GptOssForCausalLM) end to end: moelab's logits are transformers'
(attention sinks, q/k/v/o biases, a sliding window shorter than the sequences on half the
layers, YaRN, router bias with a softmax over the top-k, expert biases, clamped SwiGLU) on one
process and with the experts split over 2 ranks; released-style MXFP4 expert weights
(blocks + E8M0 scales, quantised here by hand) load to exactly transformers' dequantisation
and give the logits of a transformers model holding those weights; a pruned MXFP4 checkpoint
is written dequantised and loads in stock transformers; merged experts average their biases;
`inspect` shows the structure. The pruned round trips, every criterion and the small sweep run
on gpt-oss in test_model_families.py."""
import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers.integrations.mxfp4 import FP4_VALUES, convert_moe_packed_tensors

from helpers import hf_logits, hf_model, moelab_logits, split_ref

FAMILY = "gpt_oss"
LAYERS, E = 4, 8


def src(fixtures):
    return fixtures / "models" / FAMILY


def ref_of(fixtures):
    return load_file(str(fixtures / "models" / f"{FAMILY}.ref.safetensors"))


def worst(a_list, b_list):
    return max((a - b).abs().max().item() for a, b in zip(a_list, b_list))


@pytest.mark.parametrize("ranks", [1, 2])
def test_logits_match_transformers(ranks, fixtures, moelab, tmp_path):
    ref = ref_of(fixtures)
    extra = ("--ranks", ranks) if ranks > 1 else ()
    mine = moelab_logits(lambda *a: moelab(*extra, *a), src(fixtures), ref, tmp_path)
    err = worst(mine, split_ref(ref))
    print(f"[gpt_oss] {ranks} rank(s): max |logit diff| transformers vs moelab = {err:.3g}")
    assert err <= 1e-4


def test_the_sliding_window_sinks_and_clamp_all_change_the_logits(fixtures):
    """The fixture exercises what it claims: without the window, without the sinks or
    without the clamp transformers' logits move (so the parity above covers each)."""
    ref = ref_of(fixtures)
    base = split_ref(ref)
    model = hf_model(src(fixtures), trust_remote_code=False)
    model.config.layer_types = ["full_attention"] * LAYERS
    changed = {"window": worst(hf_logits(model, ref), base)}
    model = hf_model(src(fixtures), trust_remote_code=False)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.sinks.fill_(-1e4)
    changed["sinks"] = worst(hf_logits(model, ref), base)
    model = hf_model(src(fixtures), trust_remote_code=False)
    for layer in model.model.layers:
        layer.mlp.experts.limit = 1e9
    changed["clamp"] = worst(hf_logits(model, ref), base)
    print(f"[gpt_oss] logit change without: {changed}")
    assert all(v > 1e-2 for v in changed.values()), changed


# --- MXFP4 -----------------------------------------------------------------------------

def quantize_mxfp4(w_out_in):
    """[E, out, in] float -> (blocks [E, out, in/32, 16] uint8, scales [E, out, in/32] uint8),
    the layout of transformers integrations/mxfp4.py: 32 values per block, the block's
    scale 2^(s - 127) with the smallest s that brings its largest |value| to <= 6, each
    value the nearest FP4 E2M1 code, two codes per byte, the low nibble first."""
    E, O, I = w_out_in.shape
    blocks = w_out_in.reshape(E, O, I // 32, 32).double()
    amax = blocks.abs().amax(-1).clamp_min(1e-30)
    exp = torch.ceil(torch.log2(amax / 6.0)).clamp(-127, 127)
    scaled = blocks / torch.pow(2.0, exp).unsqueeze(-1)
    table = torch.tensor(FP4_VALUES[:8], dtype=torch.double)
    mag = (scaled.abs().unsqueeze(-1) - table).abs().argmin(-1)  # nearest magnitude
    codes = (mag | ((scaled < 0) & (mag > 0)).long() << 3).to(torch.uint8)
    packed = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return packed.contiguous(), (exp + 127).to(torch.uint8).contiguous()


def mxfp4_checkpoint(fixtures, out):
    """The fixture with both expert weights of every layer stored as MXFP4 (biases and
    everything else as they were) and the released checkpoints' quantization_config."""
    shutil.copytree(src(fixtures), out)
    tensors = load_file(str(out / "model.safetensors"))
    for l in range(LAYERS):
        for proj in ("gate_up_proj", "down_proj"):
            w = tensors.pop(f"model.layers.{l}.mlp.experts.{proj}")  # [E, in, out]
            blocks, scales = quantize_mxfp4(w.transpose(1, 2))
            tensors[f"model.layers.{l}.mlp.experts.{proj}_blocks"] = blocks
            tensors[f"model.layers.{l}.mlp.experts.{proj}_scales"] = scales
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((out / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "mxfp4",
                                  "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                             "model.embed_tokens", "lm_head"]}
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    return tensors


def dequantized(tensors, layer, proj):
    """transformers' own dequantisation, [E, in, out] as GptOssExperts holds it."""
    p = f"model.layers.{layer}.mlp.experts.{proj}"
    return convert_moe_packed_tensors(tensors[p + "_blocks"], tensors[p + "_scales"], dtype=torch.float32)


def test_mxfp4_quantiser_round_trips_through_transformers_dequantisation():
    """The quantiser above writes what transformers reads: the dequantised block equals the
    FP4 grid value times its scale, within half a grid step of the input."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2, 64, 3, generator=g) * torch.tensor([0.01, 1.0, 300.0])  # [E, in, out]
    blocks, scales = quantize_mxfp4(w.transpose(1, 2))
    assert blocks.shape == (2, 3, 2, 16) and scales.shape == (2, 3, 2)
    back = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)
    assert back.shape == w.shape
    step = torch.pow(2.0, scales.double() - 127).repeat_interleave(32, -1).transpose(1, 2)  # 2^s per value
    assert ((back - w).abs() <= step + 1e-12).all()


def test_mxfp4_experts_load_as_transformers_dequantises_them(fixtures, moelab, tmp_path):
    """moelab dequantises on load (written back by prune, dequantised, float32) to exactly
    convert_moe_packed_tensors' values; the pruned checkpoint drops quantization_config and
    slices the dequantised experts."""
    mx = tmp_path / "mxfp4"
    packed = mxfp4_checkpoint(fixtures, mx)
    out = tmp_path / "pruned"
    moelab("prune", mx, "--out", out, "--drop", "0:3")
    written = load_file(str(out / "model.safetensors"))
    cfg = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in cfg
    assert not any(k.endswith(("_blocks", "_scales")) for k in written)
    for l in range(LAYERS):
        keep = [e for e in range(E) if not (l == 0 and e == 3)]
        for proj in ("gate_up_proj", "down_proj"):
            want = dequantized(packed, l, proj)[keep]
            got = written[f"model.layers.{l}.mlp.experts.{proj}"]
            assert got.dtype == torch.float32 and torch.equal(got, want), (l, proj)
    # The pruned (dequantised) checkpoint loads in stock transformers with moelab's logits.
    ref = ref_of(fixtures)
    err = worst(hf_logits(hf_model(out, trust_remote_code=True), ref), moelab_logits(moelab, out, ref, tmp_path))
    print(f"[gpt_oss mxfp4] pruned: max |logit diff| transformers vs moelab = {err:.3g}")
    assert err <= 1e-4


@pytest.mark.parametrize("ranks", [1, 2])
def test_mxfp4_logits_match_transformers_with_the_dequantised_weights(ranks, fixtures, moelab, tmp_path):
    mx = tmp_path / "mxfp4"
    packed = mxfp4_checkpoint(fixtures, mx)
    model = hf_model(src(fixtures), trust_remote_code=False)
    with torch.no_grad():
        for l, layer in enumerate(model.model.layers):
            layer.mlp.experts.gate_up_proj.copy_(dequantized(packed, l, "gate_up_proj"))
            layer.mlp.experts.down_proj.copy_(dequantized(packed, l, "down_proj"))
    ref = ref_of(fixtures)
    hf = hf_logits(model, ref)
    extra = ("--ranks", ranks) if ranks > 1 else ()
    mine = moelab_logits(lambda *a: moelab(*extra, *a), mx, ref, tmp_path)
    err = worst(hf, mine)
    moved = worst(hf, split_ref(ref))
    print(f"[gpt_oss mxfp4] {ranks} rank(s): max |logit diff| = {err:.3g} (quantisation moved the logits by "
          f"{moved:.3g})")
    assert err <= 1e-4
    assert moved > 1e-3  # the quantised model is another model


def test_a_quant_method_other_than_mxfp4_is_refused_in_one_line(fixtures, moelab, tmp_path):
    mx = tmp_path / "mxfp4"
    mxfp4_checkpoint(fixtures, mx)
    cfg = json.loads((mx / "config.json").read_text())
    cfg["quantization_config"]["quant_method"] = "gptq"
    (mx / "config.json").write_text(json.dumps(cfg))
    proc = moelab("inspect", mx, check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1 and proc.stderr.count("\n") == 1
    assert "config.json" in errors[0] and "quantization_config" in errors[0] and "mxfp4" in errors[0]


# --- structure, merging ------------------------------------------------------------------

def test_inspect_shows_sliding_layers_sinks_and_biases(fixtures, moelab):
    info = json.loads(moelab("inspect", src(fixtures), "--json").stdout)
    assert info["family"] == FAMILY and info["architecture"] == "GptOssForCausalLM"
    assert info["attention"] == {"kind": "gqa", "qk_norm": False, "bias": True, "sinks": True}
    assert info["experts"] == {"bias": True, "activation": "clamped_swiglu", "swiglu_limit": 2.0,
                               "swiglu_alpha": 1.702}
    assert info["routing"]["router_bias"] and info["routing"]["softmax_over_topk"]
    assert [layer["attention"] for layer in info["layers"]] == ["sliding", "full", "sliding", "full"]
    assert all(layer["type"] == "moe" and layer["experts"] == E for layer in info["layers"])
    assert info["rope"]["type"] == "yarn"
    # Parameter counts: every tensor of the checkpoint, biases and sinks included.
    total = sum(t.numel() for t in load_file(str(src(fixtures) / "model.safetensors")).values())
    assert info["params"]["total"] == total
    text = moelab("inspect", src(fixtures)).stdout
    assert "attention sinks" in text and "q/k/v/o biases" in text and "clamped SwiGLU" in text
    assert "router bias" in text and text.count("[sliding window]") == 2


def test_merged_experts_average_their_biases_and_load_in_transformers(fixtures, moelab, tmp_path):
    """moelab merge on gpt-oss: a merged expert is the weighted mean of its members' affine
    maps (weights and biases alike), its router row and bias the same mean; transformers
    runs the result with moelab's logits."""
    data = tmp_path / "cal.json"
    data.write_text(json.dumps({"input_ids": [[1 + (i * 7 + j * 3) % 500 for j in range(16)] for i in range(6)]}))
    moelab("calibrate", src(fixtures), "--data", data, "--seq-len", 16, "--collect", "dense_outputs", "--out",
           tmp_path / "s.h5")
    out = tmp_path / "merged"
    moelab("merge", src(fixtures), "--stats", tmp_path / "s.h5", "--ratio", 0.25, "--out", out)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["num_local_experts"] == 6
    merged = load_file(str(out / "model.safetensors"))
    assert merged["model.layers.0.mlp.router.bias"].shape == (6,)
    assert merged["model.layers.0.mlp.experts.gate_up_proj_bias"].shape == (6, 64)
    assert merged["model.layers.0.mlp.experts.down_proj_bias"].shape == (6, 64)
    ref = ref_of(fixtures)
    err = worst(hf_logits(hf_model(out, trust_remote_code=True), ref), moelab_logits(moelab, out, ref, tmp_path))
    print(f"[gpt_oss merge] max |logit diff| transformers vs moelab = {err:.3g}")
    assert err <= 1e-4
