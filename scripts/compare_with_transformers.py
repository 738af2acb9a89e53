#!/usr/bin/env python3
"""Loads a model directory in transformers and in moelab (`moelab forward`) and prints
the largest logit difference on a few sequences; exits 1 if it is over --tol."""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM
from transformers import logging as hf_logging


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("moelab")
    ap.add_argument("model_dir")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32, trust_remote_code=True).eval()
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(0, model.config.vocab_size, (n,), generator=g).tolist() for n in (12, 31, 7)]
    with tempfile.TemporaryDirectory() as tmp:
        ids = pathlib.Path(tmp) / "ids.json"
        ids.write_text(json.dumps({"input_ids": seqs}))
        out = pathlib.Path(tmp) / "logits.safetensors"
        subprocess.run([args.moelab, "--log-level", "warn", "forward", args.model_dir, "--ids-json", str(ids),
                        "--out", str(out)], check=True)
        mine = load_file(str(out))
    worst = 0.0
    with torch.no_grad():
        for i, s in enumerate(seqs):
            ref = model(input_ids=torch.tensor([s])).logits[0]
            worst = max(worst, (ref - mine[f"logits.{i}"]).abs().max().item())
    print(f"max |logit difference| moelab vs transformers {model.__class__.__name__}: {worst:.2e}"
          f" ({'OK' if worst <= args.tol else 'FAIL'}, tolerance {args.tol:g})")
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
