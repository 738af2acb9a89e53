#!/usr/bin/env python3
"""Writes the committed seed inputs of every fuzz target into corpus/<target>/seed-*
(small valid files taken from, or shaped like, the repository's own inputs). Past
crashes live beside them as crash-* files. Re-run after a format change:
    python3 tests/fuzz/make_seeds.py
"""
import json
import pathlib
import struct

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CORPUS = HERE / "corpus"


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, metadata=None):
    """tensors: name -> (dtype, shape, raw bytes)."""
    header, blob = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + blob


def seeds_safetensors():
    f32 = struct.pack("<6f", *range(6))
    put("fuzz_safetensors", "f32", safetensors({"w": ("F32", [2, 3], f32)}, {"format": "pt"}))
    put("fuzz_safetensors", "mixed", safetensors({
        "a": ("BF16", [4], b"\x80\x3f" * 4), "b": ("I64", [2], struct.pack("<2q", 1, -1)),
        "c": ("U8", [3], b"\x01\x02\x03"), "d": ("F16", [0], b""), "e": ("BOOL", [2], b"\x00\x01")}))


def seeds_model_config():
    put("fuzz_model_config", "debian-moe", (ROOT / "models/debian-moe/config.json").read_bytes())
    qwen = {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "vocab_size": 64,
            "hidden_size": 16, "num_hidden_layers": 3, "num_attention_heads": 2, "num_key_value_heads": 1,
            "head_dim": 8, "moe_intermediate_size": 8, "intermediate_size": 32, "num_experts": 4,
            "num_experts_per_tok": 2, "mlp_only_layers": [1], "decoder_sparse_step": 1, "norm_topk_prob": True,
            "rms_norm_eps": 1e-6, "max_position_embeddings": 128, "sliding_window": None,
            "rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 2.0,
                                "original_max_position_embeddings": 64},
            "moelab_num_experts_per_layer": [4, 0, 3], "moelab_skip_beta": [0.1, 0.0, 0.5],
            "moelab_compressed_experts": {"main": 1}}
    put("fuzz_model_config", "qwen3-yarn", json.dumps(qwen, indent=1))


def seeds_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers, normalizers, processors
    text = ["Hello world 123", "über € café", "def f(x):\n\treturn x", "<s> end"] * 20
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    put("fuzz_tokenizer", "byte-level", tok.to_str())
    sp = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    sp.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    sp.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                    decoders.Strip(" ", 1, 0)])
    sp.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    sp.train_from_iterator(text, trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<s>"] +
                                                     [f"<0x{b:02X}>" for b in range(256)]))
    put("fuzz_tokenizer", "byte-fallback", sp.to_str())


def seeds_sweep_spec():
    spec = (ROOT / "configs/quickstart.yaml").read_text()
    spec = spec.replace("../models/debian-moe/corpus/", "").replace("../models/debian-moe", "model")
    import re
    spec = re.sub(r"\b[a-z]+\.(calibration|quick)\.jsonl", "data.jsonl", spec)
    spec = re.sub(r"tasks/debian_moe_[a-z]+\.jsonl", "task.jsonl", spec)
    put("fuzz_sweep_spec", "quickstart", spec)
    put("fuzz_sweep_spec", "minimal", "name: s\nmodel: model\ncriteria: [EUF, Max-RWN]\nratios: [0.25]\n"
        "calibration: [{name: c, data: [data.jsonl], seq_len: 16, num_samples: 2}]\n"
        "procedures: [one-shot, iterative]\neval: {perplexity: [{name: p, data: data.jsonl}], tasks: [task.jsonl]}\n")


def seeds_pruning_plan():
    plan = {"plan_version": 1, "model": "m", "architecture": "MixtralForCausalLM", "criterion": "EUF",
            "direction": "min", "ratio": 0.5, "scope": "uniform", "procedure": "iterative", "scores": "s.h5",
            "experts_per_token": 2, "layer_ratios": {"0": 0.5, "1": 0.25},
            "layers": {"0": {"num_experts": 4, "keep": [0, 2]}, "1": {"num_experts": 4, "keep": [1, 2, 3]}},
            "rounds": [{"0": [1], "1": [0]}, {"0": [3]}]}
    put("fuzz_pruning_plan", "iterative", json.dumps(plan, indent=1))


def seeds_jsonl_tasks():
    task = b"".join((ROOT / "configs/tasks/debian_moe_en.jsonl").read_bytes().splitlines(keepends=True)[:3])
    put("fuzz_jsonl_tasks", "mc-default", b"\x00" + task)
    put("fuzz_jsonl_tasks", "mc-template", b"\x01" + b'{"question": "2+2?", "options": ["3", "4"], "answer": 1}\n'
        b'{"question": "x {y}", "options": [" a", " b", " c"], "answer": 0}\n')
    docs = b"".join((ROOT / "models/debian-moe/corpus/en.quick.jsonl").read_bytes().splitlines(keepends=True)[:2])
    put("fuzz_jsonl_tasks", "documents", b"\x02" + docs[:2000] + b"\n")
    put("fuzz_jsonl_tasks", "token-ids", b"\x03" + b"{\"input_ids\": [[1, 2, 3], [4, 5]]}\n")


if __name__ == "__main__":
    for f in (seeds_safetensors, seeds_model_config, seeds_tokenizer, seeds_sweep_spec, seeds_pruning_plan,
              seeds_jsonl_tasks):
        f()
