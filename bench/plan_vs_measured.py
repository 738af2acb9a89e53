#!/usr/bin/env python3
"""The resource planner's estimate (`moelab plan-resources`) against the measured peak
resident memory of `moelab calibrate`, per rank, for random Mixtrals of three sizes and
P = 1 and 2 ranks, in three modes:

  whole      `calibrate` (the whole model resident);
  layerwise  `calibrate --layerwise` (one decoder layer at a time, hidden states in memory);
  scratch    `calibrate --layerwise --memory-budget B` with B = the largest layer's weights on
             a rank plus that rank's hidden states: they exceed half of what the layer leaves
             of B, so they go to a scratch file (--scratch-dir: the temporary directory).

P = 1 runs as a plain process (as `moelab sweep run` runs a one-rank job), P = 2 as
`mpirun -np 2`; each rank runs under /usr/bin/time, which reports its own peak RSS. The
planner is given the same batch size, sequence length, sample count, criteria (the
calibrate default: every statistic group but gradients and NAEE, and act_outliers
layer by layer) and mode (--layerwise, --memory-budget). Prints a Markdown table with
planned / measured per rank; exits 1 when a ratio is outside 1 +- --tolerance.

  python3 bench/plan_vs_measured.py --moelab build/runner/moelab [--modes whole layerwise scratch]
      [--stored float32|bfloat16] [--family mixtral|qwen3_next] [--json out.json]
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import torch
from transformers import MixtralConfig, MixtralForCausalLM
from transformers import logging as hf_logging

# name -> (hidden, expert intermediate, layers, experts, vocab)
SIZES = {
    "S": (256, 1024, 4, 8, 4096),
    "M": (512, 1536, 4, 8, 8192),
    "L": (768, 3072, 4, 8, 8192),
}
MODES = ["whole", "layerwise", "scratch"]


def make_model(path, hidden, inter, layers, experts, vocab, stored="float32", family="mixtral"):
    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    if family == "qwen3_next":
        # Qwen3-Next's hybrid layers (3 Gated DeltaNet, 1 gated full attention per 4) at the
        # same hidden and expert sizes: 8 key heads serving 16 value heads of hidden / 8.
        from transformers import Qwen3NextConfig, Qwen3NextForCausalLM
        cfg = Qwen3NextConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
                              moe_intermediate_size=inter, shared_expert_intermediate_size=inter,
                              num_hidden_layers=layers, num_attention_heads=8, num_key_value_heads=4,
                              head_dim=hidden // 8, num_experts=experts, num_experts_per_tok=2,
                              linear_num_key_heads=8, linear_num_value_heads=16, linear_key_head_dim=hidden // 8,
                              linear_value_head_dim=hidden // 8, max_position_embeddings=4096)
        model = Qwen3NextForCausalLM(cfg).to(getattr(torch, stored))
    else:
        cfg = MixtralConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                            num_attention_heads=8, num_key_value_heads=4, num_local_experts=experts,
                            num_experts_per_tok=2, max_position_embeddings=1024)
        model = MixtralForCausalLM(cfg).to(getattr(torch, stored))
    model.config.torch_dtype = stored
    model.save_pretrained(path)
    return sum(p.numel() for p in model.parameters())


def mode_args(mode, budget, tmp):
    """calibrate's / plan-resources' arguments for a mode (budget: bytes, scratch only)."""
    if mode == "whole":
        return []
    if mode == "layerwise":
        return ["--layerwise"]
    return ["--layerwise", "--memory-budget", str(budget)]


def scratch_budget(hidden, inter, experts, ranks, in_memory_plan):
    """A --memory-budget that sends every rank's hidden states to the scratch file: the
    largest layer's weights on the rank plus its hidden states (calibrate keeps them in
    memory only up to half of what the layer leaves). Layer weights of these Mixtrals:
    q, o [D, D], k, v [D / 2, D] (4 of 8 heads), router [E, D], 2 norms, the rank's
    experts 3 D F each (the most of any rank: ceil(E / P))."""
    D, F, E = hidden, inter, experts
    layer = 4 * (3 * D * D + E * D + 2 * D + -(-E // ranks) * 3 * D * F)
    return layer + min(r["hidden_states"] for r in in_memory_plan["per_rank"])


def measure(moelab, model, data, ranks, calib, tmp, extra=()):
    """Peak RSS (bytes) of each rank of `moelab calibrate`, and whether it put the hidden
    states in a scratch file (its log says so)."""
    for f in tmp.glob("rss.*"):
        f.unlink()
    timed = ["sh", "-c", f'exec /usr/bin/time -f %M -o {tmp}/rss.${{OMPI_COMM_WORLD_RANK:-0}} "$@"', "sh",
             moelab, "--log-level", "info", "calibrate", str(model), "--data", str(data),
             "--seq-len", str(calib["seq_len"]), "--num-samples", str(calib["num_samples"]),
             "--batch-size", str(calib["batch_size"]), "--out", str(tmp / "stats.h5"), "--overwrite", *extra]
    if "--memory-budget" in extra:
        timed += ["--scratch-dir", str(tmp)]
    cmd = timed if ranks == 1 else ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(ranks), *timed]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if proc.returncode != 0:
        sys.exit(f"moelab calibrate failed with {ranks} ranks:\n{proc.stderr}")
    return ([int((tmp / f"rss.{r}").read_text().split()[-1]) * 1024 for r in range(ranks)],
            "hidden states" in proc.stderr and "in a scratch file" in proc.stderr)


def plan(moelab, model, ranks, calib, extra=()):
    out = subprocess.run([moelab, "plan-resources", str(model), "--ranks", str(ranks),
                          "--seq-len", str(calib["seq_len"]), "--num-samples", str(calib["num_samples"]),
                          "--batch-size", str(calib["batch_size"]), *extra, "--json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moelab", required=True)
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--num-samples", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--tolerance", type=float, default=0.15)
    # The checkpoint's dtype on disk (calibrate computes in float32 either way): bfloat16 is
    # what users download, converted tensor by tensor while loading.
    ap.add_argument("--stored", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--json", type=pathlib.Path)
    # qwen3_next: the hybrid layers' working set (Gated DeltaNet chunks) instead of attention's.
    ap.add_argument("--family", default="mixtral", choices=["mixtral", "qwen3_next"])
    args = ap.parse_args()
    calib = {"seq_len": args.seq_len, "num_samples": args.num_samples, "batch_size": args.batch_size}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for name in args.sizes:
            hidden, inter, layers, experts, vocab = SIZES[name]
            model = tmp / f"model_{name}"
            params = make_model(model, hidden, inter, layers, experts, vocab, args.stored, args.family)
            g = torch.Generator().manual_seed(0)
            data = tmp / "ids.json"
            data.write_text(json.dumps({"input_ids": torch.randint(
                1, vocab, (args.num_samples, args.seq_len), generator=g).tolist()}))
            for mode in args.modes:
                for p in args.ranks:
                    budget = None
                    if mode == "scratch":
                        budget = scratch_budget(hidden, inter, experts, p, plan(args.moelab, model, p, calib,
                                                                                 ["--layerwise"]))
                    extra = mode_args(mode, budget, tmp)
                    planned = plan(args.moelab, model, p, calib, extra)
                    if mode == "scratch" and not planned["scratch_file_bytes"]:
                        sys.exit(f"plan-resources does not put the hidden states in a scratch file for {extra}")
                    measured, scratch = measure(args.moelab, model, data, p, calib, tmp, extra)
                    if scratch != (mode == "scratch"):
                        sys.exit(f"calibrate {' '.join(extra)} {'did' if scratch else 'did not'} use a scratch file")
                    for r, m in enumerate(measured):
                        est = planned["per_rank"][r]
                        rows.append({"model": name, "params": params, "mode": mode, "memory_budget": budget,
                                     "ranks": p, "rank": r, "measured": m, "planned": est["total"],
                                     "ratio": est["total"] / m,
                                     "components": {k: v for k, v in est.items() if k not in ("rank", "total")}})
                        print(f"[{name} {mode} P={p} rank {r}] planned {est['total'] / 2**20:.0f} MiB, measured "
                              f"{m / 2**20:.0f} MiB ({est['total'] / m:.3f}) "
                              f"{ {k: round(v / 2**20, 1) for k, v in est.items() if k not in ('rank', 'experts_held', 'scratch')} }",
                              file=sys.stderr)
            shutil.rmtree(model, ignore_errors=True)  # the next size needs the disk space
    print(f"{args.family}; calibration: {args.num_samples} x {args.seq_len} tokens, batch {args.batch_size}, default criteria, "
          f"float32 compute, checkpoint stored in {args.stored}, OMP_NUM_THREADS=1\n")
    print("| model | params | mode | --memory-budget | P | rank | planned MiB | measured MiB | planned / measured |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        budget = f"{r['memory_budget'] / 2**20:.1f} MiB" if r["memory_budget"] else "-"
        print(f"| {r['model']} | {r['params'] / 1e6:.1f}M | {r['mode']} | {budget} | {r['ranks']} | {r['rank']} | "
              f"{r['planned'] / 2**20:.0f} | {r['measured'] / 2**20:.0f} | {r['ratio']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps({"calibration": calib, "rows": rows}, indent=2))
    bad = [r for r in rows if abs(r["ratio"] - 1) > args.tolerance]
    if bad:
        print(f"\n{len(bad)} row(s) outside 1 +- {args.tolerance}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
