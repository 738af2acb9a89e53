#!/usr/bin/env python3
"""Scoring every criterion from an existing statistics file, without a forward pass:
wall time of `moelab score` for all criteria on a 4-layer Mixtral (8 experts, hidden
512, expert width 1408), next to the calibration that produced the file (forward +
backward for the gradient criteria + NAEE's dense pass) for scale; and 20 members of the
unified family (Family-aA-pP-bB-v) from the file alone (no model given at all).

  python3 bench/score_all_criteria.py --moelab build/runner/moelab
"""
import argparse
import json
import pathlib
import subprocess
import tempfile
import time

import torch
from transformers import MixtralConfig, MixtralForCausalLM
from transformers import logging as hf_logging


def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moelab", required=True)
    ap.add_argument("--sequences", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    args = ap.parse_args()
    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as d:
        d = pathlib.Path(d)
        torch.manual_seed(0)
        cfg = MixtralConfig(vocab_size=4096, hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
                            num_attention_heads=8, num_key_value_heads=4, num_local_experts=8, num_experts_per_tok=2,
                            max_position_embeddings=1024)
        MixtralForCausalLM(cfg).save_pretrained(d / "model")
        ids = torch.randint(1, 4096, (args.sequences, args.seq_len)).tolist()
        (d / "data.json").write_text(json.dumps({"input_ids": ids}))
        names = subprocess.run([args.moelab, "score", "--list"], check=True, capture_output=True,
                               text=True).stdout.splitlines()[1:]
        criteria = []
        for line in names:  # the fixed criteria come first, up to the first blank line
            if not line.strip():
                break
            criteria.append(line.split()[0])
        calib = timed([args.moelab, "calibrate", d / "model", "--data", d / "data.json", "--seq-len",
                       str(args.seq_len), "--num-samples", "0", "--criteria", ",".join(criteria), "--out",
                       d / "stats.h5"])
        score = timed([args.moelab, "score", "--stats", d / "stats.h5", "--model", d / "model", "--second-model",
                       d / "model", "--criteria", ",".join(criteria), "--out", d / "scores.json"])
        n = len(json.loads((d / "scores.json").read_text())["criteria"])
        members = [f"Family-a{a}-p{p}-b{b}-{v}" for a in (0, 1, 2) for p in (1, 2) for b in (0, 1)
                   for v in ("act", "out")][:20]
        family = timed([args.moelab, "score", "--stats", d / "stats.h5", "--criteria", ",".join(members), "--out",
                        d / "family.json"])
        print(f"| what | wall s |\n|---|---|\n"
              f"| calibrate ({args.sequences} x {args.seq_len} tokens; every group incl. gradients, NAEE) | {calib:.1f} |\n"
              f"| score all {n} criteria from the file (+ weights, no forward) | {score:.2f} |\n"
              f"| score 20 Family members from the file alone (no model, no weights) | {family:.2f} |")


if __name__ == "__main__":
    main()
