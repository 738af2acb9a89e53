#!/usr/bin/env python3
"""moelab against what users run instead (transformers + forward hooks), side by side in
one run on the same models, data and machine (issue: benchmarks).

Measures, for each model (the embedded default `models/debian-moe` and a larger random
Mixtral, hidden 1024, 8 experts, that stresses matmuls):
 1. calibration: `moelab calibrate --criteria EAN,REAP` (usage, act_norms, out_norms) against
    bench/hf_hooks_calibrate.py (--mode routed, and --mode all-experts: REAP's observer),
    tokens/s end to end (process start to exit) and for the pass alone, peak RSS
    (/usr/bin/time), and that the six statistics agree (max relative difference);
 2. evaluation: `moelab eval --data` perplexity against a batched transformers loop on the
    same windows (stride = max length), tokens/s end to end and the two perplexities;
 3. the grouped expert computation's GFLOP/s against at::mm on the same FLOPs
    (build/bench/moelab_bench_expert_matmul; the larger model's shapes);
 4. expert-parallel scaling of calibration: 1 rank x 2 threads, 1 x 1, 2 ranks x 1 thread.
Every run gets the same threads (OMP_NUM_THREADS=2 unless stated). Writes a Markdown report
to stdout, the numbers to --json and a plot to --plot.

  python3 bench/vs_transformers.py --moelab build/runner/moelab [--quick] [--json out.json] [--plot out.png]
  python3 bench/vs_transformers.py --moelab build/runner/moelab --default-only --repeat 3   (the default
      model's rows only; each calibration run 3 times, alternating tools, medians reported)
"""
import argparse
import json
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
STATS = ["tokens_E", "gate_sum_E", "act_norm_sum_E", "act_norm_sq_sum_E", "out_norm_sum_E", "gate_out_norm_sum_E"]


def timed(cmd, threads, tmp, ranks=1):
    """Runs cmd (under mpirun when ranks > 1); returns (wall s, peak RSS MiB per rank, stdout, stderr)."""
    for f in tmp.glob("rss.*"):
        f.unlink()
    wrapped = ["sh", "-c", f'exec /usr/bin/time -f %M -o {tmp}/rss.${{OMPI_COMM_WORLD_RANK:-0}} "$@"', "sh", *cmd]
    if ranks > 1:
        wrapped = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", str(ranks),
                   "-x", "OMP_NUM_THREADS", *wrapped]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.perf_counter()
    proc = subprocess.run([str(c) for c in wrapped], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stderr[-3000:]}")
    rss = [int((tmp / f"rss.{r}").read_text().split()[-1]) / 1024 for r in range(ranks)]
    return wall, rss, proc.stdout, proc.stderr


def log_seconds(stderr, first, last):
    """Seconds between the log lines containing `first` and `last` ([HH:MM:SS.mmm] stamps)."""
    stamps = {}
    for line in stderr.splitlines():
        m = re.match(r"\[(\d+):(\d+):(\d+\.\d+)\]", line)
        if not m:
            continue
        t = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
        for key in (first, last):
            if key in line and key not in stamps:
                stamps[key] = t
    if first in stamps and last in stamps:
        return (stamps[last] - stamps[first]) % 86400
    return float("nan")


def make_large_model(path, layers, hidden, inter, vocab_tokenizer):
    import torch
    from transformers import MixtralConfig, MixtralForCausalLM
    from transformers import logging as hf_logging
    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    cfg = MixtralConfig(vocab_size=4096, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                        num_attention_heads=16, num_key_value_heads=8, num_local_experts=8, num_experts_per_tok=2,
                        max_position_embeddings=2048, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    model = MixtralForCausalLM(cfg)
    model.save_pretrained(path)
    shutil.copy(vocab_tokenizer, path / "tokenizer.json")
    return sum(p.numel() for p in model.parameters())


def calibration_data(path, n, seq_len, vocab, seed=0):
    rng = np.random.default_rng(seed)
    path.write_text(json.dumps({"input_ids": rng.integers(1, vocab, size=(n, seq_len)).tolist()}))


def compare_stats(a_path, b_path):
    worst = 0.0
    with h5py.File(a_path) as a, h5py.File(b_path) as b:
        for layer in b:
            for k in STATS:
                x, y = a[layer][k][:].astype(np.float64), b[layer][k][:].astype(np.float64)
                worst = max(worst, float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-30))))
    return worst


def eval_text(path, corpus, chars):
    docs = [json.loads(l)["text"] for l in (corpus / "en.test.jsonl").read_text().splitlines() if l.strip()]
    path.write_text("\n\n".join(docs)[:chars])


def hf_perplexity(model_dir, text_file, max_length, batch):
    """The transformers guide's loop with stride = max_length, windows batched: returns (nll, n, s)."""
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    start = time.perf_counter()
    tok = PreTrainedTokenizerFast(tokenizer_file=str(pathlib.Path(model_dir) / "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = tok(pathlib.Path(text_file).read_text())["input_ids"]
    windows = [ids[b:b + max_length] for b in range(0, len(ids), max_length)]
    nll, n = 0.0, 0
    with torch.inference_mode():
        full = [w for w in windows if len(w) == max_length]
        rest = [w for w in windows if 1 < len(w) < max_length]
        for group in [full[i:i + batch] for i in range(0, len(full), batch)] + [[w] for w in rest]:
            x = torch.tensor(group)
            logits = model(input_ids=x, use_cache=False).logits.float()
            lp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, x[:, 1:, None])
            nll -= float(lp.double().sum())
            n += lp.numel()
    return nll, n, time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moelab", required=True, type=pathlib.Path)
    ap.add_argument("--matmul-bench", type=pathlib.Path, default=None,
                    help="moelab_bench_expert_matmul (default: next to --moelab, ../bench/)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, not the machine")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--default-only", action="store_true",
                    help="the default model's calibration and evaluation only (no larger model, matmul or scaling runs)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="calibration runs per tool, alternating moelab and the scripts; medians are reported")
    ap.add_argument("--json", type=pathlib.Path)
    ap.add_argument("--plot", type=pathlib.Path)
    args = ap.parse_args()
    moelab = args.moelab.resolve()
    mm_bench = (args.matmul_bench or moelab.parent.parent / "bench" / "moelab_bench_expert_matmul").resolve()
    threads = args.threads
    q = args.quick
    sizes = dict(layers=2 if q else 4, hidden=256 if q else 1024, inter=512 if q else 2816)
    cal = dict(n=8 if q else 48, seq_len=64 if q else 256, batch=4 if q else 8)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="moelab-vs-hf-"))
    default_model = ROOT / "models" / "debian-moe"
    large = tmp / "large-mixtral"
    n_params = 0 if args.default_only else make_large_model(large, sizes["layers"], sizes["hidden"], sizes["inter"],
                                                            default_model / "tokenizer.json")
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "threads": threads,
                           "loadavg_at_start": os.getloadavg()[0]},
               "large_model": {**sizes, "experts": 8, "top_k": 2, "params": n_params}, "calibration": {},
               "eval": {}, "matmul": None, "scaling": {}}
    models = {"debian-moe (default)": default_model, "random Mixtral d1024": large}
    if args.default_only:
        del models["random Mixtral d1024"]

    for name, model in models.items():
        data = tmp / "cal.json"
        calibration_data(data, cal["n"], cal["seq_len"], 4096)
        tokens = cal["n"] * cal["seq_len"]
        row = {"tokens": tokens}
        out = tmp / "moelab.h5"
        runs = {"moelab": []}
        for _ in range(max(args.repeat, 1)):  # alternating, so that load drifts hit every tool alike
            wall, rss, _, err = timed([moelab, "calibrate", model, "--data", data, "--seq-len", cal["seq_len"],
                                       "--num-samples", 0, "--criteria", "EAN,REAP", "--batch-size",
                                       cal["batch"], "--out", out, "--overwrite"], threads, tmp)
            runs["moelab"].append({"wall_s": wall, "pass_s": log_seconds(err, "calibrating on", "wrote"),
                                   "rss_mib": rss[0]})
            for mode in ("routed", "all-experts"):
                hf_out = tmp / f"hf-{mode}.h5"
                wall, rss, so, _ = timed([sys.executable, HERE / "hf_hooks_calibrate.py", model, "--data", data,
                                          "--batch-size", cal["batch"], "--mode", mode, "--out", hf_out], threads, tmp)
                info = json.loads(so.strip().splitlines()[-1])
                runs.setdefault(f"hf_{mode}", []).append(
                    {"wall_s": wall, "pass_s": info["pass_s"], "rss_mib": rss[0],
                     "experts_implementation": info["experts_implementation"],
                     "max_rel_diff_vs_moelab": compare_stats(out, hf_out)})
        for tool, rs in runs.items():  # medians of the timings, the largest RSS and difference
            row[tool] = dict(rs[0], wall_s=float(np.median([r["wall_s"] for r in rs])),
                             pass_s=float(np.median([r["pass_s"] for r in rs])),
                             rss_mib=max(r["rss_mib"] for r in rs), runs=len(rs))
            if "max_rel_diff_vs_moelab" in rs[0]:
                row[tool]["max_rel_diff_vs_moelab"] = max(r["max_rel_diff_vs_moelab"] for r in rs)
        results["calibration"][name] = row
        print(f"calibration {name}: {json.dumps(row)}", file=sys.stderr)

        text = tmp / "eval.txt"
        eval_text(text, default_model / "corpus", 20000 if q else 120000)
        max_len = 128 if q else 256
        res = tmp / "eval.jsonl"
        res.unlink(missing_ok=True)
        wall, rss, _, _ = timed([moelab, "eval", model, "--data", text, "--max-length", max_len, "--stride",
                                 max_len, "--batch-size", cal["batch"], "--results", res], threads, tmp)
        rec = json.loads(res.read_text().splitlines()[-1])
        # transformers in a child process too, so that its RSS is its own.
        probe = (f"import json,sys; sys.path.insert(0, {str(HERE)!r}); import vs_transformers as v; "
                 f"print(json.dumps(v.hf_perplexity({str(model)!r}, {str(text)!r}, {max_len}, {cal['batch']})))")
        hwall, hrss, so, _ = timed([sys.executable, "-c", probe], threads, tmp)
        nll, n, _ = json.loads(so.strip().splitlines()[-1])
        results["eval"][name] = {
            "scored_tokens": rec["n_tokens"],
            "moelab": {"wall_s": wall, "rss_mib": rss[0], "perplexity": rec["metrics"]["perplexity"]},
            "transformers": {"wall_s": hwall, "rss_mib": hrss[0], "perplexity": float(np.exp(nll / n)),
                             "scored_tokens": n}}
        print(f"eval {name}: {json.dumps(results['eval'][name])}", file=sys.stderr)

    if mm_bench.exists() and not args.default_only:
        shape = ["--tokens", cal["batch"] * cal["seq_len"], "--hidden", sizes["hidden"], "--intermediate",
                 sizes["inter"], "--experts", 8, "--top-k", 2]
        _, _, so, _ = timed([mm_bench, *shape], threads, tmp)
        results["matmul"] = json.loads(so.strip().splitlines()[-1])

    data = tmp / "cal.json"
    scaling = () if args.default_only else (("1 rank x 2 threads", 1, 2), ("1 rank x 1 thread", 1, 1),
                                            ("2 ranks x 1 thread", 2, 1))
    for label, ranks, thr in scaling:
        out = tmp / "scale.h5"
        wall, rss, _, err = timed([moelab, "calibrate", large, "--data", data, "--seq-len", cal["seq_len"],
                                   "--num-samples", 0, "--criteria", "EAN,REAP", "--batch-size",
                                   cal["batch"], "--out", out, "--overwrite"], thr, tmp, ranks=ranks)
        results["scaling"][label] = {"wall_s": wall, "pass_s": log_seconds(err, "calibrating on", "wrote"),
                                     "rss_mib": rss}
    results["machine"]["loadavg_at_end"] = os.getloadavg()[0]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(report(results, cal))
    if args.plot:
        plot(results, args.plot)
    shutil.rmtree(tmp, ignore_errors=True)


def report(r, cal):
    lines = [f"Machine: {r['machine']['cpus']} CPUs, {r['machine']['platform']}; {r['machine']['threads']} threads "
             f"per run; load average {r['machine']['loadavg_at_start']:.1f} at start, "
             f"{r['machine']['loadavg_at_end']:.1f} at end.", "",
             f"Calibration: {cal['n']} sequences x {cal['seq_len']} tokens, batch {cal['batch']}, statistics "
             "usage + act_norms (EAN) + out_norms (REAP).", "",
             "| model | tool | end-to-end tok/s | pass tok/s | peak RSS MiB | moelab speed-up (e2e / pass) | max rel. diff of stats |",
             "|---|---|---|---|---|---|---|"]
    for name, row in r["calibration"].items():
        t = row["tokens"]
        m = row["moelab"]
        lines.append(f"| {name} | moelab | {t / m['wall_s']:.0f} | {t / m['pass_s']:.0f} | {m['rss_mib']:.0f} | | |")
        for mode in ("routed", "all-experts"):
            h = row[f"hf_{mode}"]
            lines.append(f"| {name} | transformers + hooks ({mode}, experts `{h['experts_implementation']}`) | "
                         f"{t / h['wall_s']:.0f} | {t / h['pass_s']:.0f} | {h['rss_mib']:.0f} | "
                         f"**{h['wall_s'] / m['wall_s']:.2f}x** / {h['pass_s'] / m['pass_s']:.2f}x | "
                         f"{h['max_rel_diff_vs_moelab']:.1e} |")
    lines += ["", "| model | tool | scored tok/s (e2e) | peak RSS MiB | perplexity | moelab speed-up |", "|---|---|---|---|---|---|"]
    for name, e in r["eval"].items():
        n = e["scored_tokens"]
        m, h = e["moelab"], e["transformers"]
        lines.append(f"| {name} | moelab | {n / m['wall_s']:.0f} | {m['rss_mib']:.0f} | {m['perplexity']:.4f} | |")
        lines.append(f"| {name} | transformers (batched windows) | {h['scored_tokens'] / h['wall_s']:.0f} | "
                     f"{h['rss_mib']:.0f} | {h['perplexity']:.4f} | **{h['wall_s'] / m['wall_s']:.2f}x** |")
    if r["matmul"]:
        mm = r["matmul"]
        lines += ["", f"Grouped experts (N={mm['tokens']}, D={mm['hidden']}, F={mm['intermediate']}, E={mm['experts']}, "
                  f"K={mm['top_k']}, {mm['threads']} threads; rows per expert {mm['rows_per_expert_min']}.."
                  f"{mm['rows_per_expert_max']}): moe_forward {mm['moe_forward_gflops']:.1f} GFLOP/s, at::mm on the "
                  f"same FLOPs {mm['mm_peak_gflops']:.1f} GFLOP/s: **{100 * mm['fraction_of_peak']:.0f}% of peak**."]
    if r["scaling"]:
        lines += ["", "| expert parallelism (larger model) | pass tok/s | end-to-end tok/s | peak RSS MiB per rank |",
                  "|---|---|---|---|"]
    t = cal["n"] * cal["seq_len"]
    for label, s in r["scaling"].items():
        lines.append(f"| {label} | {t / s['pass_s']:.0f} | {t / s['wall_s']:.0f} | "
                     f"{', '.join(f'{x:.0f}' for x in s['rss_mib'])} |")
    return "\n".join(lines)


def plot(r, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels, values = [], []
    for name, row in r["calibration"].items():
        for mode in ("routed", "all-experts"):
            labels.append(f"calibrate\n{name.split()[0]}\nvs hooks ({mode})")
            values.append(row[f"hf_{mode}"]["wall_s"] / row["moelab"]["wall_s"])
    for name, e in r["eval"].items():
        labels.append(f"perplexity\n{name.split()[0]}")
        values.append(e["transformers"]["wall_s"] / e["moelab"]["wall_s"])
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.bar(range(len(values)), values, color="#4477aa")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xticks(range(len(values)), labels, fontsize=7)
    ax.set_ylabel("moelab speed-up over transformers (end to end)")
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.1f}x", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    tmp.replace(path)


if __name__ == "__main__":
    main()
