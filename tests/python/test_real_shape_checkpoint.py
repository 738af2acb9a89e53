"""bench/real_shape_checkpoint.py writes what transformers' save_pretrained writes (names, shapes,
dtypes, index) for each supported family, without the moelab binary; and its parameter counts of
the real configs in configs/shapes/ are those of a meta-device model."""
import importlib.util
import json
import pathlib

import pytest
import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForCausalLM
from transformers import logging as hf_logging

from helpers import REPO

_spec = importlib.util.spec_from_file_location("real_shape_checkpoint", REPO / "bench" / "real_shape_checkpoint.py")
rsc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rsc)

COMMON = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, vocab_size=128,
              max_position_embeddings=128, num_experts_per_tok=2, torch_dtype="float32")
# Small configs of each family, 8 experts; each with a layer kind or option of its own.
SMALL = {
    "olmoe": dict(architectures=["OlmoeForCausalLM"], num_experts=8, intermediate_size=32),
    "mixtral": dict(architectures=["MixtralForCausalLM"], num_local_experts=8, intermediate_size=32),
    # Dense MLP in layers 0 and 2 (decoder_sparse_step), a shared expert and its gate, qkv biases.
    "qwen2_moe": dict(architectures=["Qwen2MoeForCausalLM"], num_experts=8, intermediate_size=48,
                      moe_intermediate_size=16, shared_expert_intermediate_size=40, decoder_sparse_step=2),
    # A dense first layer (mlp_only_layers), its own head_dim, tied embeddings (no lm_head on disk).
    "qwen3_moe": dict(architectures=["Qwen3MoeForCausalLM"], num_experts=8, intermediate_size=48,
                      moe_intermediate_size=16, head_dim=8, mlp_only_layers=[0], tie_word_embeddings=True),
}


def small_config(tmp_path, family):
    d = tmp_path / f"{family}-config"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(dict(COMMON, model_type=family, **SMALL[family])))
    return d


def on_disk(folder):
    """{name: (shape, dtype)} of every tensor in folder's safetensors files."""
    found = {}
    for f in sorted(pathlib.Path(folder).glob("*.safetensors")):
        with safe_open(str(f), "pt") as s:
            for k in s.keys():
                sl = s.get_slice(k)
                assert k not in found, f"{k} in two files"
                found[k] = (tuple(sl.get_shape()), sl.get_dtype())
    return found


def reference_save(config_dir, out, dtype):
    """What transformers itself writes for the config: a real (tiny) model, save_pretrained."""
    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config_dir), dtype=dtype)
    model.save_pretrained(out)
    return out


def load_cleanly(folder):
    model, info = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    return model


@pytest.mark.parametrize("family", sorted(SMALL))
def test_writes_what_save_pretrained_writes(tmp_path, family):
    cfg_dir = small_config(tmp_path, family)
    out = tmp_path / "written"
    summary = rsc.main(["--config", str(cfg_dir), "--out", str(out), "--dtype", "bfloat16"])
    ref = on_disk(reference_save(cfg_dir, tmp_path / "reference", torch.bfloat16))
    got = on_disk(out)
    assert got == ref, (sorted(set(got.items()) ^ set(ref.items()))[:10])
    assert summary["parameters"] == sum(torch.Size(s).numel() for s, _ in ref.values())
    assert any(".experts.7." in k for k in got)  # per-expert tensors on disk, all 8

    saved = json.loads((out / "config.json").read_text())
    assert saved["torch_dtype"] == saved["dtype"] == "bfloat16" and saved["model_type"] == family
    assert not (out / "model.safetensors.index.json").exists() and (out / "model.safetensors").exists()
    assert not list(tmp_path.glob(".*partial*"))

    model = load_cleanly(out)
    p = dict(model.named_parameters())
    assert torch.all(p["model.norm.weight"] == 1)
    assert abs(p["model.embed_tokens.weight"].float().std().item() - 0.02) < 0.004


def test_multi_shard_index_and_same_values(tmp_path):
    cfg_dir = small_config(tmp_path, "qwen2_moe")
    one, many = tmp_path / "one", tmp_path / "many"
    rsc.main(["--config", str(cfg_dir), "--out", str(one), "--dtype", "float32", "--seed", "3"])
    # 40 kB shards: several files, the embeddings (32 kB) alone in theirs.
    s = rsc.main(["--config", str(cfg_dir), "--out", str(many), "--dtype", "float32", "--seed", "3",
                  "--shard-gb", "0.00004"])
    files = sorted(p.name for p in many.glob("*.safetensors"))
    n = len(files)
    assert n == s["shards"] > 3 and files == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    index = json.loads((many / "model.safetensors.index.json").read_text())
    tensors = on_disk(many)
    assert set(index["weight_map"]) == set(tensors) == set(on_disk(one))
    for name, fname in index["weight_map"].items():
        with safe_open(str(many / fname), "pt") as f:
            assert name in f.keys()
    sizes = {name: torch.Size(shape).numel() * 4 for name, (shape, _) in tensors.items()}
    assert index["metadata"]["total_size"] == sum(sizes.values()) == s["bytes"]
    assert index["metadata"]["total_parameters"] == s["parameters"]
    for f in files:  # no shard over the limit unless it is one tensor
        with safe_open(str(many / f), "pt") as h:
            keys = list(h.keys())
        assert len(keys) == 1 or sum(sizes[k] for k in keys) <= 40_000
    # One random stream in file order: the shard size does not change the values.
    a, b = load_cleanly(one).state_dict(), load_cleanly(many).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_layer_and_expert_overrides(tmp_path):
    cfg_dir = small_config(tmp_path, "mixtral")
    out = tmp_path / "out"
    rsc.main(["--config", str(cfg_dir), "--out", str(out), "--layers", "2", "--experts", "3", "--dtype", "float32"])
    saved = json.loads((out / "config.json").read_text())
    assert (saved["num_hidden_layers"], saved["num_local_experts"], saved["num_experts_per_tok"]) == (2, 3, 2)
    names = on_disk(out)
    assert any("layers.1." in k for k in names) and not any("layers.2." in k for k in names)
    assert any(".experts.2." in k for k in names) and not any(".experts.3." in k for k in names)
    assert names["model.layers.0.block_sparse_moe.gate.weight"][0] == (3, 64)
    load_cleanly(out)


def meta_numel(config_dir):
    hf_logging.set_verbosity_error()
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config_dir))
    return sum(p.numel() for p in model.parameters())


# The real checkpoints' counts: OLMoE-1B-7B-0924's safetensors headers hold 3219 tensors and
# 6,919,161,856 parameters; Qwen1.5-MoE-A2.7B's 14,315,784,192 (the model cards' "14.3B").
@pytest.mark.parametrize("folder, params, tensors", [("olmoe-1b-7b", 6_919_161_856, 3219),
                                                     ("qwen1.5-moe-a2.7b", 14_315_784_192, 4659),
                                                     ("mixtral-8x7b", 46_702_792_704, 995)])
def test_count_only_of_the_real_configs(capsys, folder, params, tensors):
    config_dir = REPO / "configs" / "shapes" / folder
    rsc.main(["--config", str(config_dir), "--count-only"])
    counted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert counted["parameters"] == meta_numel(config_dir) == params
    assert counted["tensors"] == tensors and counted["bytes"] == 2 * params


def test_refuses_other_families(tmp_path):
    d = tmp_path / "llama"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    with pytest.raises(SystemExit) as e:
        rsc.main(["--config", str(d), "--out", str(tmp_path / "out")])
    assert "model_type 'llama' is not supported" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()
