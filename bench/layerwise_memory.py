#!/usr/bin/env python3
"""Peak resident memory of `moelab calibrate`, whole model against --layerwise with a
memory budget (and the same, resumable: a checkpoint after every layer, hidden states
included), on a random Mixtral whose weights are many times the budget.

Both runs use the same model, data and machine, one after the other; each run's peak
RSS comes from the kernel (/usr/bin/time %M), its size at start (what
the budget counts from) from moelab's last log line. Writes a Markdown table to stdout
(and --json for the numbers); the statistics files are checked to be equal.

  python3 bench/layerwise_memory.py --moelab build/runner/moelab [--budget 128M]
"""
import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
import torch
from transformers import MixtralConfig, MixtralForCausalLM
from transformers import logging as hf_logging


def make_model(path, hidden, inter, layers, experts, vocab):
    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    cfg = MixtralConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                        num_attention_heads=8, num_key_value_heads=4, num_local_experts=experts,
                        num_experts_per_tok=2, max_position_embeddings=1024, tie_word_embeddings=False)
    model = MixtralForCausalLM(cfg)
    model.save_pretrained(path)
    return sum(p.numel() for p in model.parameters())


def run(moelab, args, tmp):
    """Runs moelab under /usr/bin/time (a small process that forks it: the kernel's
    ru_maxrss of a child forked straight from this Python, which holds the model it
    built, would start at this process's size)."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    t0 = time.time()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", tmp / "rss.txt", moelab, *map(str, args)],
                          capture_output=True, text=True, env=env)
    wall = time.time() - t0
    if proc.returncode != 0:
        sys.exit(f"moelab {' '.join(map(str, args))} failed:\n{proc.stderr}")
    peak = int((tmp / "rss.txt").read_text().split()[-1]) / 1024
    m = re.search(r"peak resident memory: ([\d.]+) MiB \(([-\d.]+) MiB above the ([\d.]+) MiB at start", proc.stderr)
    return {"peak_mib": peak, "logged_peak_mib": float(m[1]), "start_mib": float(m[3]), "wall_s": wall,
            "above_start_mib": peak - float(m[3]), "scratch": "in a scratch file" in proc.stderr}


def same_stats(a, b):
    with h5py.File(a) as x, h5py.File(b) as y:
        return all(np.array_equal(x[g][d][:], y[g][d][:]) for g in x for d in x[g]) and set(x) == set(y)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moelab", required=True)
    ap.add_argument("--budget", default="128M")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--intermediate", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--sequences", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=2,
                    help="sequences per forward: the attention scores of one batch, B x heads x T x T floats, "
                         "are part of the working memory the budget must hold")
    ap.add_argument("--json", type=pathlib.Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        params = make_model(tmp / "model", args.hidden, args.intermediate, args.layers, args.experts, args.vocab)
        data = tmp / "ids.json"
        g = torch.Generator().manual_seed(0)
        data.write_text(json.dumps({"input_ids": torch.randint(
            1, args.vocab, (args.sequences, args.seq_len), generator=g).tolist()}))
        common = ["--log-level", "info", "calibrate", tmp / "model", "--data", data, "--seq-len", args.seq_len,
                  "--num-samples", 0, "--criteria", "EUF,EAN,REAP,SoftFrequency", "--batch-size", args.batch_size]
        rows = [("whole model", "-", run(args.moelab, common + ["--out", tmp / "whole.h5"], tmp)),
                ("--layerwise", args.budget,
                 run(args.moelab, common + ["--out", tmp / "layers.h5", "--layerwise", "--memory-budget",
                                            args.budget], tmp)),
                ("--layerwise --checkpoint-every 1", args.budget,
                 run(args.moelab, common + ["--out", tmp / "resumable.h5", "--layerwise", "--memory-budget",
                                            args.budget, "--checkpoint-every", 1], tmp))]
        equal = same_stats(tmp / "whole.h5", tmp / "layers.h5") and same_stats(tmp / "whole.h5", tmp / "resumable.h5")
    print(f"model: {params / 1e6:.1f}M parameters, fp32 weights {params * 4 / 2**20:.0f} MiB; "
          f"{args.sequences} x {args.seq_len} tokens, batches of {args.batch_size}; statistics bit-identical: {equal}\n")
    print("| mode | budget | peak RSS (MiB) | at start (MiB) | above start (MiB) | hidden states | wall (s) |")
    print("|---|---|---|---|---|---|---|")
    for mode, budget, r in rows:
        where = "-" if mode == "whole model" else ("scratch file" if r["scratch"] else "memory")
        print(f"| {mode} | {budget} | {r['peak_mib']:.0f} | {r['start_mib']:.0f} | {r['above_start_mib']:.0f} | "
              f"{where} | {r['wall_s']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"params": params, "equal": equal,
                                         "rows": [{"mode": m, "budget": b, **r} for m, b, r in rows]}, indent=2))


if __name__ == "__main__":
    main()
