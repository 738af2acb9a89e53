#!/usr/bin/env python3
"""Peak resident memory per rank of `moelab forward` with expert parallelism, P = 1
against P = 2 (and more), on a random Mixtral whose experts dominate its size.

Each rank runs under /usr/bin/time, which reports its own peak RSS; both runs use the
same model, inputs and machine, one after the other. Writes a Markdown table to
stdout (and --json for the numbers).

  python3 bench/ep_memory.py --moelab build/runner/moelab [--ranks 1 2 4]
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import torch
from transformers import MixtralConfig, MixtralForCausalLM
from transformers import logging as hf_logging


def make_model(path, hidden, inter, layers, experts):
    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    cfg = MixtralConfig(vocab_size=2048, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                        num_attention_heads=8, num_key_value_heads=4, num_local_experts=experts,
                        num_experts_per_tok=2, max_position_embeddings=1024)
    model = MixtralForCausalLM(cfg)
    model.save_pretrained(path)
    total = sum(p.numel() for p in model.parameters())
    expert = sum(p.numel() for n, p in model.named_parameters() if ".experts." in n)
    return total, expert


def run(moelab, model, ids, ranks, out, tmp):
    # Each rank writes its own peak RSS (KiB) to rss.<rank>.
    for f in tmp.glob("rss.*"):
        f.unlink()
    timed = ["sh", "-c", f'exec /usr/bin/time -f %M -o {tmp}/rss.${{OMPI_COMM_WORLD_RANK:-0}} "$@"', "sh",
             moelab, "--log-level", "warn", "forward", str(model), "--ids-json", str(ids), "--out", str(out)]
    cmd = timed if ranks == 1 else ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(ranks), *timed]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"moelab failed with {ranks} ranks:\n{proc.stderr}")
    return [int((tmp / f"rss.{r}").read_text().split()[-1]) / 1024 for r in range(ranks)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moelab", required=True)
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--intermediate", type=int, default=3072)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--json", type=pathlib.Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        total, expert = make_model(tmp / "model", args.hidden, args.intermediate, args.layers, args.experts)
        ids = tmp / "ids.json"
        g = torch.Generator().manual_seed(0)
        ids.write_text(json.dumps({"input_ids": torch.randint(1, 2048, (16, 128), generator=g).tolist()}))
        rows = []
        for p in args.ranks:
            rss = run(args.moelab, tmp / "model", ids, p, tmp / "out.safetensors", tmp)
            rows.append({"ranks": p, "peak_rss_mib_per_rank": rss, "max_rank_mib": max(rss)})
    base = rows[0]["max_rank_mib"]
    print(f"model: {total / 1e6:.1f}M parameters ({100 * expert / total:.0f}% in routed experts), "
          f"fp32 weights {total * 4 / 2**20:.0f} MiB\n")
    print("| ranks | peak RSS per rank (MiB) | largest rank vs P=1 |")
    print("|---|---|---|")
    for r in rows:
        per = ", ".join(f"{x:.0f}" for x in r["peak_rss_mib_per_rank"])
        print(f"| {r['ranks']} | {per} | {r['max_rank_mib'] / base:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"params": total, "expert_params": expert, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
