"""Greedy generation on the shipped model: `moelab generate` against transformers' generate, both
over a KV cache, fp32 on the CPU, one process each, timed one after the other in this run. Also
checks that both produce the same tokens.

  python3 bench/generation.py --moelab build/runner/moelab [--new-tokens 64] [--prompts 4]
"""
import argparse
import json
import pathlib
import subprocess
import tempfile
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

REPO = pathlib.Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "debian-moe"
PROMPTS = ["The Debian project", "apt-get install", "Question: what is a package?\nAnswer:",
           "The kernel module", "Debian releases are named", "A mirror of the archive"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moelab", default=str(REPO / "build" / "runner" / "moelab"))
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    a = ap.parse_args()
    prompts = PROMPTS[: a.prompts]
    torch.set_num_threads(a.threads)

    # transformers: load, then generate each prompt (batch 1, as lm-eval's HF backend at batch size 1).
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(MODEL)
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
    t_load = time.perf_counter() - t0
    hf_tokens = []
    t0 = time.perf_counter()
    for p in prompts:
        ids = tok(p, return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=a.new_tokens,
                                 do_sample=False, pad_token_id=tok.pad_token_id)
        new = out[0, ids.shape[1]:].tolist()
        eos = model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos])
        hf_tokens.append(new[: next((i for i, t in enumerate(new) if t in eos), len(new))])
    t_hf = time.perf_counter() - t0

    rows = []
    with tempfile.TemporaryDirectory() as d:
        req = pathlib.Path(d) / "r.jsonl"
        # No stop string: both run to max_gen_toks or the end-of-sequence id.
        req.write_text("".join(json.dumps({"context": p, "max_gen_toks": a.new_tokens}) + "\n" for p in prompts))
        # Batch 1 is transformers' setting here; the default batch 8 runs the prompts together.
        for ranks, batch in ((1, 1), (1, 8), (2, 8)):
            out = pathlib.Path(d) / f"g{ranks}-{batch}.jsonl"
            cmd = [a.moelab, *(["--ranks", "2"] if ranks == 2 else []), "generate", str(MODEL), "--requests",
                   str(req), "--out", str(out), "--overwrite", "--batch-size", str(batch)]
            env = dict(__import__("os").environ, OMP_NUM_THREADS=str(a.threads if ranks == 1 else 1),
                       PMIX_MCA_psec="native")
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            wall = time.perf_counter() - t0
            got = [json.loads(x)["tokens"] for x in out.read_text().splitlines()]
            same = got == hf_tokens
            rows.append((ranks, batch, wall, sum(len(g) for g in got), same))
    n_hf = sum(len(h) for h in hf_tokens)
    print(f"prompts {len(prompts)}, new tokens per prompt {a.new_tokens}, threads {a.threads}")
    print(f"transformers generate (KV cache): load {t_load:.2f} s, generate {t_hf:.2f} s, "
          f"{n_hf / t_hf:.1f} tokens/s")
    for ranks, batch, wall, n, same in rows:
        print(f"moelab generate --ranks {ranks} --batch-size {batch} (whole process, KV cache): {wall:.2f} s, "
              f"{n / wall:.1f} tokens/s, "
              f"same tokens as transformers: {same}")


if __name__ == "__main__":
    main()
