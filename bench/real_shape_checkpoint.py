#!/usr/bin/env python3
"""Writes a random-weight Hugging Face checkpoint with the exact shape and on-disk tensor names
of a real MoE model, without building the model in memory.

  python3 bench/real_shape_checkpoint.py --config configs/shapes/olmoe-1b-7b --out /tmp/olmoe-real \
      [--dtype bfloat16|float32] [--layers N] [--experts E] [--shard-gb 2] [--seed 0] [--std 0.02]
  python3 bench/real_shape_checkpoint.py --config configs/shapes/qwen1.5-moe-a2.7b --count-only

--config is a folder with the model's config.json (configs/shapes/ has real ones); --layers and
--experts override num_hidden_layers and the routed-expert count (a smaller model with the same
layer shape). Families: olmoe, mixtral, qwen2_moe, qwen3_moe.

How: the full-config model is built on torch.device("meta") (shapes and dtypes, no memory), and
its state dict goes through the two steps save_pretrained applies before writing (drop tied
weights; revert transformers 5's in-memory weight conversions, e.g. fused experts.gate_up_proj ->
experts.N.gate_proj/up_proj.weight, Mixtral's block_sparse_moe.experts.N.w1/w2/w3). The result is
the (name, shape, dtype) list save_pretrained would write; tests/python/test_real_shape_checkpoint.py
checks it against a real save_pretrained for each family.

Then one tensor is generated at a time (normal * std; norm weights 1, biases 0) and the shards are
written in order with safetensors' save_file, which takes a whole shard's dict: peak memory is
about one shard (--shard-gb, default 2 GB) plus the libraries. Everything goes to a temporary
folder beside --out, renamed at the end, so nothing half-written is ever at --out.
"""
import argparse
import json
import math
import pathlib
import shutil
import sys
import time

import torch
from safetensors.torch import save_file

# The routed-expert count's config.json key of each family (a file may spell it another way).
FAMILIES = {"olmoe": "num_experts", "mixtral": "num_local_experts", "qwen2_moe": "num_experts",
            "qwen3_moe": "num_experts"}
EXPERT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts")
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}
# Copied beside the weights when the config folder has them.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "merges.txt",
                   "special_tokens_map.json", "added_tokens.json", "generation_config.json")


def load_config(config_dir, layers=None, experts=None):
    """config.json as a dict, with the overrides applied; refuses a family it does not know."""
    cfg = json.loads((pathlib.Path(config_dir) / "config.json").read_text())
    family = cfg.get("model_type")
    if family not in FAMILIES:
        sys.exit(f"real_shape_checkpoint: model_type {family!r} is not supported "
                 f"(only {', '.join(FAMILIES)})")
    if layers:
        cfg["num_hidden_layers"] = layers
        if isinstance(cfg.get("layer_types"), list):  # must have one entry per layer
            cfg["layer_types"] = (cfg["layer_types"] * layers)[:layers]
    if experts:
        cfg[next((k for k in EXPERT_KEYS if k in cfg), FAMILIES[family])] = experts
        if cfg.get("num_experts_per_tok", 0) > experts:  # top-k cannot exceed the experts
            cfg["num_experts_per_tok"] = experts
    return cfg


def saved_tensors(cfg, dtype):
    """[(name, shape, dtype)] in the order and form save_pretrained writes them for cfg."""
    from transformers import CONFIG_MAPPING, AutoModelForCausalLM
    from transformers import logging as hf_logging
    from transformers.core_model_loading import revert_weight_conversion
    from transformers.modeling_utils import remove_tied_weights_from_state_dict

    hf_logging.set_verbosity_error()  # e.g. a real eos id above a test config's vocabulary
    config = CONFIG_MAPPING[cfg["model_type"]].from_dict(dict(cfg))
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    # The same two steps as save_pretrained, on meta tensors.
    state = remove_tied_weights_from_state_dict(model.state_dict(), model)
    state = revert_weight_conversion(model, state)
    return [(name, tuple(t.shape), t.dtype) for name, t in state.items()]


def nbytes(shape, dtype):
    return math.prod(shape) * dtype.itemsize


def plan_shards(tensors, limit):
    """Consecutive groups of tensors of at most `limit` bytes (a larger tensor gets its own)."""
    shards, size = [[]], 0
    for t in tensors:
        b = nbytes(t[1], t[2])
        if shards[-1] and size + b > limit:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += b
    return shards


def random_tensor(name, shape, dtype, std, gen):
    if name.endswith(".bias"):
        return torch.zeros(shape, dtype=dtype)
    if len(shape) == 1 and name.endswith("norm.weight"):  # RMSNorm scales (layernorm, q_norm, k_norm)
        return torch.ones(shape, dtype=dtype)
    return torch.empty(shape, dtype=dtype).normal_(0.0, std, generator=gen)  # no float32 copy for bf16


def write_checkpoint(cfg, tensors, out, dtype_name, shard_bytes, seed, std, tokenizer_dir=None):
    total = sum(nbytes(s, d) for _, s, d in tensors)
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out.parent).free
    if free < total + (1 << 30):
        sys.exit(f"real_shape_checkpoint: {out.parent} has {free / 2**30:.1f} GiB free, "
                 f"{total / 2**30:.1f} GiB (+1) needed")
    tmp = out.parent / f".{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)  # a previous run that was killed
    tmp.mkdir()

    shards = plan_shards(tensors, shard_bytes)
    n = len(shards)
    names = ["model.safetensors"] if n == 1 else [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    gen = torch.Generator().manual_seed(seed)  # one stream in file order: same values for any --shard-gb
    weight_map, start = {}, time.time()
    for fname, shard in zip(names, shards):
        data = {name: random_tensor(name, shape, dt, std, gen) for name, shape, dt in shard}
        save_file(data, str(tmp / fname), metadata={"format": "pt"})  # as save_pretrained writes
        size = sum(t.nbytes for t in data.values())
        del data
        weight_map.update({name: fname for name, _, _ in shard})
        print(f"  {fname}: {len(shard)} tensors, {size / 2**30:.2f} GiB, {time.time() - start:.0f} s", flush=True)
    if n > 1:
        index = {"metadata": {"total_parameters": sum(math.prod(s) for _, s, _ in tensors),
                              "total_size": total},
                 "weight_map": weight_map}
        (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")

    cfg = dict(cfg, torch_dtype=dtype_name, dtype=dtype_name)  # transformers 4 and 5 spellings
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    for f in TOKENIZER_FILES:
        if tokenizer_dir and (pathlib.Path(tokenizer_dir) / f).is_file():
            shutil.copy2(pathlib.Path(tokenizer_dir) / f, tmp / f)
    tmp.rename(out)  # only a complete checkpoint ever has the name --out
    return n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="folder with the model's config.json")
    ap.add_argument("--out", help="checkpoint folder to write (must not exist)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    ap.add_argument("--layers", type=int, help="override num_hidden_layers")
    ap.add_argument("--experts", type=int, help="override the number of routed experts")
    ap.add_argument("--shard-gb", type=float, default=2.0,
                    help="shard size in GB (1e9 bytes); peak memory is about one shard (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--std", type=float, default=0.02)
    ap.add_argument("--count-only", action="store_true", help="print the parameter count as JSON; write nothing")
    args = ap.parse_args(argv)

    if not args.count_only and not args.out:
        ap.error("--out is required unless --count-only")
    if args.out and not args.count_only and pathlib.Path(args.out).exists():
        sys.exit(f"real_shape_checkpoint: {args.out} exists; remove it first")
    start = time.time()
    cfg = load_config(args.config, args.layers, args.experts)
    tensors = saved_tensors(cfg, DTYPES[args.dtype])
    params = sum(math.prod(s) for _, s, _ in tensors)
    total = sum(nbytes(s, d) for _, s, d in tensors)
    summary = {"model_type": cfg["model_type"], "layers": cfg["num_hidden_layers"],
               "experts": next((cfg[k] for k in EXPERT_KEYS if k in cfg), None), "tensors": len(tensors),
               "parameters": params, "dtype": args.dtype, "bytes": total}
    if args.count_only:
        print(json.dumps(summary))
        return summary
    print(f"{cfg['model_type']}: {params:,} parameters, {len(tensors)} tensors, {total / 2**30:.2f} GiB "
          f"({args.dtype}) -> {args.out}", flush=True)
    shards = write_checkpoint(cfg, tensors, args.out, args.dtype, int(args.shard_gb * 1e9), args.seed, args.std,
                              tokenizer_dir=args.config)
    summary.update(shards=shards, seconds=round(time.time() - start, 1))
    print(f"wrote {params:,} parameters, {total:,} bytes ({total / 2**30:.2f} GiB) in {shards} shard(s) "
          f"in {summary['seconds']} s", flush=True)
    return summary


if __name__ == "__main__":
    main()
