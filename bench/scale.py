#!/usr/bin/env python3
"""The whole loop on a real-shape checkpoint (issue 29): a random-weight model with the
exact shape and tensor names of a real MoE (bench/real_shape_checkpoint.py, bf16, written
shard by shard without building the model in memory), then what a researcher runs on it:

  inspect -> plan-resources (every mode) -> calibrate --layerwise -> score -> prune 50%
  (surgery) -> eval --layerwise (perplexity) -> forward --layerwise -> transformers loads
  the pruned bf16 checkpoint and its logits on a few tokens are compared with moelab's;

plus the memory guard (whole-model eval of the full checkpoint refused before loading)
and, on a model of the same layer shape that fits in memory (--fits-layers layers), the
whole-model pass against the layer-by-layer one side by side (same statistics, same
tokens) with the GEMM rate of this machine's at::mm at the expert shape for reference.

Each moelab command runs under /usr/bin/time (wall time, peak RSS); each is planned with
`moelab plan-resources --command ... --json` with the same arguments, and the planned
peak is printed beside the measured one. Prints Markdown tables; --json keeps the rows.

  python3 bench/scale.py --moelab build/runner/moelab --config configs/shapes/olmoe-1b-7b \\
      --work /tmp/scale [--model EXISTING_DIR] [--budget 3G] [--samples 8 --seq-len 512]
      [--fits-layers 2] [--skip-transformers] [--json out.json]

Disk: the checkpoint (12.9 GiB for OLMoE-1B-7B) and its pruned copy (about half) under
--work; memory: the transformers check loads the pruned model in float32 (14.8 GB for
OLMoE-1B-7B at 50%); --skip-transformers leaves it out.
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
ENV = dict(os.environ, PMIX_MCA_psec="native")


def run(cmd, check=True, timeout=None, env=None):
    """(wall seconds, peak RSS bytes, completed process) of a command under /usr/bin/time."""
    rss_file = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / f"scale-rss-{os.getpid()}"
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *map(str, cmd)], capture_output=True,
                          text=True, env=env or ENV, timeout=timeout)
    wall = time.perf_counter() - t0
    rss = int(rss_file.read_text().split()[-1]) * 1024 if rss_file.exists() else 0
    if check and proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stderr[-3000:]}")
    print(f"[{wall:7.1f} s {rss / 2**30:6.2f} GiB] {' '.join(map(str, cmd))}", file=sys.stderr)
    return wall, rss, proc


def plan(moelab, model, *args):
    out = subprocess.run([moelab, "plan-resources", str(model), *map(str, args), "--json"], capture_output=True,
                         text=True, check=True, env=ENV).stdout
    return json.loads(out)["peak_per_rank"]


def pass_tokens_per_s(stderr):
    """The pass's own rate: calibrate's progress line at 100% ("... 217 tok/s ETA 0:00")."""
    rate = None
    for line in stderr.splitlines():
        if "tok/s" in line and "100%" in line:
            rate = float(line.split("tok/s")[0].split()[-1])
    return rate


def decoder_flops_per_token(cfg, seq_len):
    """Multiply-adds x 2 of one token through the decoder layers (no embedding, no lm_head):
    attention projections, router, the top-k experts, and the attention scores and
    weighted sum over seq_len keys (the kernel computes the full square)."""
    D = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    G = cfg.get("num_key_value_heads", H)
    hd = cfg.get("head_dim") or D // H
    E = cfg.get("num_experts") or cfg.get("num_local_experts")
    K = cfg["num_experts_per_tok"]
    F = cfg.get("moe_intermediate_size") or cfg["intermediate_size"]
    shared = cfg.get("shared_expert_intermediate_size", 0)
    per_layer = (2 * H * hd * D + 2 * G * hd * D) + E * D + K * 3 * D * F + 3 * D * shared + 2 * seq_len * H * hd
    return 2 * per_layer * cfg["num_hidden_layers"]


def mm_gflops(m, k, n, threads):
    """at::mm (torch.matmul, the libtorch moelab links) at one shape: the machine's limit."""
    import torch
    torch.set_num_threads(threads)
    a, w = torch.randn(m, k), torch.randn(n, k)
    a @ w.t()
    t0 = time.perf_counter()
    for _ in range(10):
        a @ w.t()
    return 2 * m * k * n * 10 / (time.perf_counter() - t0) / 1e9


def write_checkpoint(config, out, layers=None):
    if out.exists():
        return
    cmd = [sys.executable, HERE / "real_shape_checkpoint.py", "--config", config, "--out", out]
    if layers:
        cmd += ["--layers", str(layers)]
    wall, rss, _ = run(cmd)
    print(f"wrote {out} in {wall:.0f} s (peak {rss / 2**30:.2f} GiB)", file=sys.stderr)


def token_file(path, vocab, samples, seq_len, seed=0):
    import random
    r = random.Random(seed)
    path.write_text(json.dumps({"input_ids": [[r.randrange(1, vocab) for _ in range(seq_len)]
                                              for _ in range(samples)]}))
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moelab", required=True)
    ap.add_argument("--config", default=str(ROOT / "configs/shapes/olmoe-1b-7b"))
    ap.add_argument("--work", type=pathlib.Path, default=pathlib.Path("/tmp/moelab-scale"))
    ap.add_argument("--model", type=pathlib.Path, help="an existing real-shape checkpoint (else written in --work)")
    ap.add_argument("--budget", default="3G", help="--memory-budget of the layer-by-layer commands")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--criteria", default="EAN,REAP")
    ap.add_argument("--fits-layers", type=int, default=2, help="layers of the model that fits (0: skip)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--skip-transformers", action="store_true")
    ap.add_argument("--limit", help="MOELAB_MEMORY_LIMIT for the whole-model refusal (default: the machine's)")
    ap.add_argument("--steps", default="loop,transformers,fits",
                    help="which parts to run: loop (inspect .. forward), transformers (needs the loop's "
                         "pruned model and logits in --work), fits (whole model against layer by layer)")
    ap.add_argument("--json", type=pathlib.Path)
    a = ap.parse_args()
    steps = set(a.steps.split(","))
    moelab = str(pathlib.Path(a.moelab).resolve())
    work = a.work
    work.mkdir(parents=True, exist_ok=True)
    model = a.model or work / "model"
    write_checkpoint(a.config, model)
    cfg = json.loads((model / "config.json").read_text())
    vocab = cfg["vocab_size"]
    ids = token_file(work / "ids.json", vocab, a.samples, a.seq_len)
    calib = ["--seq-len", a.seq_len, "--num-samples", a.samples, "--batch-size", a.batch_size]
    lw = ["--layerwise", "--memory-budget", a.budget]
    rows, facts = [], {}

    def row(step, wall, rss, planned=None, **extra):
        rows.append({"step": step, "seconds": round(wall, 2), "peak_rss": rss, "planned": planned, **extra})

    pruned = work / "pruned"
    logits = work / "logits.safetensors"
    fwd_ids = work / "fwd_ids.json"
    tok_src = ROOT / "models/debian-moe/tokenizer.json"  # ids below the model's vocab
    crit = ["--criteria", a.criteria]
    tokens = a.samples * a.seq_len
    if "loop" in steps:
        # 1. inspect and the memory guard on the full checkpoint.
        wall, rss, _ = run([moelab, "inspect", model])
        row("inspect", wall, rss)
        text = work / "eval.txt"
        corpus = (ROOT / "models/debian-moe/corpus/en.test.jsonl").read_text().splitlines()
        text.write_text("\n".join(json.loads(line)["text"] for line in corpus[:a.samples * 6]))
        tok_src = ROOT / "models/debian-moe/tokenizer.json"  # ids below the model's vocab
        shutil.copy(tok_src, model / "tokenizer.json")
        wall, rss, proc = run([moelab, "eval", model, "--data", text, "--max-length", a.seq_len], check=False, timeout=120,
                              env=dict(ENV, MOELAB_MEMORY_LIMIT=a.limit) if a.limit else None)
        refusal = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
        row("eval, whole model (refused)", wall, rss, exit=proc.returncode, message=refusal)
        if proc.returncode == 0:
            sys.exit("the whole-model eval of the full checkpoint was not refused")

        # 2. calibrate layer by layer.
        stats = work / "stats.h5"
        wall, rss, proc = run([moelab, "--log-level", "info", "calibrate", model, "--data", ids, *calib, *crit, *lw,
                               "--out", stats, "--overwrite"])
        flops = decoder_flops_per_token(cfg, a.seq_len) * tokens
        row("calibrate --layerwise", wall, rss, plan(moelab, model, *calib, *crit, *lw), tokens_per_s=tokens / wall,
            gflops=flops / wall / 1e9)

        # 3. score, 4. prune half of every layer's experts by surgery.
        scores = work / "scores.json"
        wall, rss, _ = run([moelab, "score", "--stats", stats, "--model", model, "--criteria", "EAN", "--out", scores])
        row("score EAN", wall, rss)
        pruned = work / "pruned"
        wall, rss, _ = run([moelab, "prune", model, "--scores", scores, "--criterion", "EAN", "--ratio", 0.5, "--out",
                            pruned, "--overwrite"])
        row("prune 50% (surgery)", wall, rss, plan(moelab, model, "--command", "prune"),
            bytes=sum(f.stat().st_size for f in pruned.glob("*.safetensors")))
        shutil.copy(tok_src, pruned / "tokenizer.json")

        # 5. eval and forward layer by layer on the pruned model.
        per_item = work / "items.jsonl"
        # One .txt document in disjoint windows of --seq-len tokens: as many full windows as
        # calibration sequences, which is what the planner is told.
        run([moelab, "tokenize", "--tokenizer", pruned, "--input", text, "--output", work / "text_ids.json"])
        n_tokens = len(json.loads((work / "text_ids.json").read_text())["ids"])
        windows = -(-n_tokens // a.seq_len)
        wall, rss, proc = run([moelab, "eval", pruned, "--data", text, "--max-length", a.seq_len, "--stride", a.seq_len,
                               "--batch-size", a.batch_size, *lw, "--per-item", per_item, "--overwrite"])
        row("eval --layerwise (pruned)", wall, rss,
            plan(moelab, pruned, "--command", "eval", "--seq-len", a.seq_len, "--num-samples", windows, "--batch-size",
                 a.batch_size, *lw))
        fwd_ids = token_file(work / "fwd_ids.json", vocab, 2, 16, seed=1)
        logits = work / "logits.safetensors"
        wall, rss, _ = run([moelab, "forward", pruned, "--ids-json", fwd_ids, "--out", logits, *lw])
        row("forward --layerwise (pruned)", wall, rss,
            plan(moelab, pruned, "--command", "forward", "--seq-len", 16, "--num-samples", 2, "--batch-size", 8, *lw))


    # 6. transformers loads the pruned bf16 checkpoint; logits compared in float32.
    if "transformers" in steps and not a.skip_transformers:
        import torch
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM
        t0 = time.perf_counter()
        # Loaded as stored (bf16), then converted parameter by parameter: a float32 load
        # would hold both copies (OOM-killed at 22 GiB for OLMoE-1B-7B pruned to 3.7 B).
        hf = AutoModelForCausalLM.from_pretrained(pruned, dtype=torch.bfloat16).float()
        load_s = time.perf_counter() - t0
        ours = load_file(str(logits))
        seqs = json.loads(fwd_ids.read_text())["input_ids"]
        worst = 0.0
        with torch.no_grad():
            for i, s in enumerate(seqs):
                theirs = hf(torch.tensor([s])).logits[0]
                worst = max(worst, (theirs - ours[f"logits.{i}"]).abs().max().item())
        facts["transformers"] = {"load_s": round(load_s, 1), "max_abs_logit_diff": worst,
                                 "params": sum(p.numel() for p in hf.parameters())}
        print(f"transformers loaded the pruned checkpoint in {load_s:.0f} s; max |logit diff| {worst:.2e}",
              file=sys.stderr)
        del hf

    # 7. A model of the same layer shape that fits: whole model against layer by layer.
    if a.fits_layers and "fits" in steps:
        small = work / f"model-{a.fits_layers}-layers"
        write_checkpoint(a.config, small, a.fits_layers)
        cfg_s = json.loads((small / "config.json").read_text())
        flops_s = decoder_flops_per_token(cfg_s, a.seq_len) * tokens
        for name, extra in (("whole model", []), ("layerwise", lw), ("layerwise, no prefetch", lw + ["--no-prefetch"])):
            wall, rss, proc = run([moelab, "--log-level", "info", "calibrate", small, "--data", ids, *calib, *crit,
                                   *extra, "--out", work / "small.h5", "--overwrite"])
            rate = pass_tokens_per_s(proc.stderr)
            row(f"calibrate {name} ({a.fits_layers} layers)", wall, rss,
                plan(moelab, small, *calib, *crit, *(extra[:3] if extra else [])), tokens_per_s=tokens / wall,
                pass_tokens_per_s=rate, gflops=flops_s / wall / 1e9)
        D = cfg["hidden_size"]
        F = cfg.get("moe_intermediate_size") or cfg["intermediate_size"]
        rows_per_expert = tokens * cfg["num_experts_per_tok"] // (cfg.get("num_experts") or cfg["num_local_experts"])
        facts["at_mm_gflops"] = {"shape": [rows_per_expert, D, 2 * F],
                                 "gflops": round(mm_gflops(rows_per_expert, D, 2 * F, a.threads), 1)}

    print(f"\nmodel: {a.config} ({cfg.get('model_type')}), bf16 random weights; calibration {a.samples} x "
          f"{a.seq_len} tokens, batch {a.batch_size}, criteria {a.criteria}, --memory-budget {a.budget}\n")
    print("| step | time | peak RSS | planned | planned / measured | notes |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        planned = r["planned"]
        ratio = f"{planned / r['peak_rss']:.2f}" if planned and r["peak_rss"] else "-"
        notes = []
        if "tokens_per_s" in r:
            notes.append(f"{r['tokens_per_s']:.1f} tok/s end to end, {r['gflops']:.0f} GFLOP/s")
        if r.get("pass_tokens_per_s"):
            notes.append(f"pass {r['pass_tokens_per_s']:.0f} tok/s")
        if "bytes" in r:
            notes.append(f"{r['bytes'] / 2**30:.2f} GiB written")
        if "exit" in r:
            notes.append(f"exit {r['exit']}: {r['message'][:160]}")
        print(f"| {r['step']} | {r['seconds']:.1f} s | {r['peak_rss'] / 2**30:.2f} GiB | "
              f"{planned / 2**30 if planned else 0:.2f} GiB | {ratio} | {'; '.join(notes)} |")
    for k, v in facts.items():
        print(f"- {k}: {v}")
    if a.json:
        a.json.write_text(json.dumps({"config": a.config, "rows": rows, "facts": facts}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
