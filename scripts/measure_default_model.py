#!/usr/bin/env python3
"""Measures what moelab's embedded default model (models/debian-moe) has learned, with the
moelab binary: the numbers of models/debian-moe/README.md and metrics.json.

1. Held-out bits per byte per domain (`moelab eval`, the test split, windows of 256 tokens,
   stride 128) against a unigram baseline: each test token costs -log2 p(token), p the
   token's frequency in the train split with add-one smoothing over the vocabulary
   (tokenized as eval does, without the leading <|endoftext|>), divided by the same UTF-8
   bytes. Also the per-domain multiple-choice accuracy (configs/tasks/debian_moe_*.jsonl).
2. Expert specialisation: `moelab calibrate` on each domain's calibration split (all
   256-token windows); per MoE layer the usage distribution p_d = tokens_E / sum. The
   Jensen-Shannon divergence (base 2, in [0, 1]) between two domains' distributions,
   averaged over layers, for every pair of domains; as a control, the same divergence
   between a domain's calibration split and its test split (within-domain).
3. Domain-specific pruning: per source domain S, drop 50% of each layer's experts chosen
   by a criterion (Min-EUF: least used; Min-EAN) on S's calibration statistics; evaluate
   the pruned model on every domain's test split: a matrix bpb[S][T].

  python3 scripts/measure_default_model.py --model models/debian-moe --train-corpus build/debian-moe/corpus

Writes --out (default <model>/metrics.json), <model>/corpus/unigram_counts.json (from
--train-corpus; read from there when it is not given) and <model>/expert_usage.png.
"""
import argparse
import itertools
import json
import math
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent


def run(cmd, log):
    t = time.time()
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(map(str, cmd))}\n{p.stderr[-4000:]}")
    log.append({"cmd": " ".join(map(str, cmd)).replace(str(REPO) + "/", ""), "seconds": round(time.time() - t, 1)})
    return p


def domains_of(heldout):
    return sorted(f.name.split(".")[0] for f in heldout.glob("*.test.jsonl"))


def read_docs(path):
    return [json.loads(l)["text"] for l in open(path, encoding="utf-8") if l.strip()]


def unigram_counts(tok, train_corpus):
    counts = np.zeros(tok.get_vocab_size(), dtype=np.int64)
    for f in sorted(train_corpus.glob("*.train.jsonl")):
        for enc in tok.encode_batch(read_docs(f), add_special_tokens=False):
            np.add.at(counts, enc.ids, 1)
    return counts


def unigram_bpb(tok, counts, docs):
    logp = np.log2((counts + 1) / (counts.sum() + len(counts)))
    bits = sum(-logp[enc.ids].sum() for enc in tok.encode_batch(docs, add_special_tokens=False))
    return float(bits / sum(len(d.encode()) for d in docs))


def eval_records(path):
    return [json.loads(l) for l in open(path)] if path.exists() else []


def usage(stats_path):
    import h5py
    with h5py.File(stats_path) as f:
        layers = sorted(k for k in f if k.startswith("layer_"))
        u = np.stack([f[f"{l}/tokens_E"][:].astype(np.float64) for l in layers])
    return u / u.sum(axis=1, keepdims=True)


def js(p, q):
    m = (p + q) / 2

    def kl(a, b):
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / b[nz])).sum())

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def mean_js(u, v):
    return float(np.mean([js(u[l], v[l]) for l in range(len(u))]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=pathlib.Path, default=REPO / "models/debian-moe")
    ap.add_argument("--heldout", type=pathlib.Path, help="default: <model>/corpus")
    ap.add_argument("--train-corpus", type=pathlib.Path, help="make_corpus.py's --out (for the unigram counts)")
    ap.add_argument("--tasks", type=pathlib.Path, default=REPO / "configs/tasks")
    ap.add_argument("--moelab", default=os.environ.get("MOELAB_BIN", str(REPO / "build/runner/moelab")))
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--work", type=pathlib.Path, default=REPO / "build/debian-moe/measure")
    ap.add_argument("--criteria", default="EUF,EAN")
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--out", type=pathlib.Path)
    args = ap.parse_args()
    from tokenizers import Tokenizer
    heldout = args.heldout or args.model / "corpus"
    out = args.out or args.model / "metrics.json"
    args.work.mkdir(parents=True, exist_ok=True)
    ml = [args.moelab, "--ranks", str(args.ranks)]
    log = []
    domains = domains_of(heldout)
    tok = Tokenizer.from_file(str(args.model / "tokenizer.json"))
    counts_path = heldout / "unigram_counts.json"
    if args.train_corpus:
        counts = unigram_counts(tok, args.train_corpus)
        counts_path.write_text(json.dumps({"tokenizer": "models/debian-moe/tokenizer.json",
                                           "what": "token counts of the train split (all domains), "
                                                   "tokenized without special tokens",
                                           "counts": counts.tolist()}, separators=(",", ":")) + "\n")
    counts = np.array(json.loads(counts_path.read_text())["counts"], dtype=np.int64)
    metrics = {"model": str(args.model), "domains": domains}

    # 1. bits per byte vs the unigram baseline; tasks
    test_args = [a for d in domains for a in ("--data", f"{d}:{heldout / f'{d}.test.jsonl'}")]
    tasks = sorted(args.tasks.glob("debian_moe_*.jsonl"))
    res = args.work / "base.results.jsonl"
    res.unlink(missing_ok=True)
    run(ml + ["eval", args.model, *test_args, *[a for t in tasks for a in ("--task", t)],
              "--max-length", 256, "--stride", 128, "--results", res], log)
    recs = eval_records(res)
    bpb = {r["task"]: r["metrics"]["bits_per_byte"] for r in recs if r["kind"] == "perplexity"}
    ppl = {r["task"]: r["metrics"]["perplexity"] for r in recs if r["kind"] == "perplexity"}
    acc = {r["task"].replace("debian_moe_", ""): r["metrics"] for r in recs if r["kind"] == "multiple_choice"}
    metrics["heldout"] = {d: {"bits_per_byte": bpb[d], "perplexity": ppl[d],
                              "unigram_bits_per_byte": unigram_bpb(tok, counts, read_docs(heldout / f"{d}.test.jsonl")),
                              "task_acc": acc.get(d, {}).get("acc"), "task_acc_norm": acc.get(d, {}).get("acc_norm")}
                          for d in domains}

    # 2. usage per domain (calibration split), within-domain control (test split)
    use, use_test = {}, {}
    for d in domains:
        for split, store in (("calibration", use), ("test", use_test)):
            st = args.work / f"{d}.{split}.h5"
            if not st.exists():
                run(ml + ["calibrate", args.model, "--data", heldout / f"{d}.{split}.jsonl", "--seq-len", 256,
                          "--num-samples", 0, "--criteria", args.criteria, "--out", st], log)
            store[d] = usage(st)
    pairs = {f"{a}-{b}": mean_js(use[a], use[b]) for a, b in itertools.combinations(domains, 2)}
    within = {d: mean_js(use[d], use_test[d]) for d in domains}
    metrics["usage"] = {d: use[d].tolist() for d in domains}
    metrics["js_between"] = pairs
    metrics["js_within"] = within
    metrics["js_between_mean"] = float(np.mean(list(pairs.values())))
    metrics["js_between_min"] = min(pairs.values())
    metrics["js_within_max"] = max(within.values())

    # 3. domain-specific pruning
    metrics["pruning"] = {"ratio": args.ratio}
    for crit in args.criteria.split(","):
        mat = {}
        for s in domains:
            scores = args.work / f"{s}.scores.json"
            if not scores.exists():
                run([args.moelab, "score", "--stats", args.work / f"{s}.calibration.h5", "--model", args.model,
                     "--criteria", args.criteria, "--out", scores], log)
            pruned = args.work / f"pruned-{crit}-{s}"
            run([args.moelab, "prune", args.model, "--scores", scores, "--criterion", crit, "--direction", "min",
                 "--ratio", args.ratio, "--out", pruned, "--overwrite"], log)
            res = args.work / f"pruned-{crit}-{s}.results.jsonl"
            res.unlink(missing_ok=True)
            run(ml + ["eval", pruned, *test_args, "--max-length", 256, "--stride", 128, "--results", res], log)
            mat[s] = {r["task"]: r["metrics"]["bits_per_byte"] for r in eval_records(res) if r["kind"] == "perplexity"}
        wins = sum(1 for t in domains if all(mat[t][t] < mat[s][t] for s in domains if s != t))  # strict
        metrics["pruning"][f"Min-{crit}"] = {"bpb": mat, "own_domain_best": wins,
                                             "own_vs_mean_other": {t: mat[t][t] - float(np.mean([mat[s][t] for s in domains if s != t]))
                                                                   for t in domains}}
    metrics["commands"] = log
    out.write_text(json.dumps(metrics, indent=1) + "\n")
    print_tables(metrics)
    try:
        heatmap(metrics, args.model / "expert_usage.png")
    except ImportError:
        pass


def print_tables(m):
    doms = m["domains"]
    print("| domain | bits/byte | unigram bits/byte | perplexity | task acc | task acc_norm |")
    print("|---|---|---|---|---|---|")
    for d in doms:
        h = m["heldout"][d]
        print(f"| {d} | {h['bits_per_byte']:.3f} | {h['unigram_bits_per_byte']:.3f} | {h['perplexity']:.1f} | "
              f"{h['task_acc'] if h['task_acc'] is None else round(h['task_acc'], 3)} | "
              f"{h['task_acc_norm'] if h['task_acc_norm'] is None else round(h['task_acc_norm'], 3)} |")
    print(f"\nJS divergence of expert usage (mean over layers): between domains mean "
          f"{m['js_between_mean']:.3f}, min {m['js_between_min']:.3f} "
          f"({min(m['js_between'], key=m['js_between'].get)}); within a domain (calibration vs test) max "
          f"{m['js_within_max']:.3f}")
    for crit, p in m["pruning"].items():
        if crit == "ratio":
            continue
        print(f"\n{crit}, ratio {m['pruning']['ratio']}: bits/byte on the test split of T (columns) after pruning with "
              f"S's calibration (rows); own domain strictly best in {p['own_domain_best']}/{len(doms)} columns")
        print("| S \\ T | " + " | ".join(doms) + " |")
        print("|---" * (len(doms) + 1) + "|")
        for s in doms:
            print(f"| {s} | " + " | ".join(
                (f"**{p['bpb'][s][t]:.2f}**" if s == t else f"{p['bpb'][s][t]:.2f}") for t in doms) + " |")


def heatmap(m, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    doms = m["domains"]
    u = np.array([m["usage"][d] for d in doms])  # [domain, layer, expert]
    L = u.shape[1]
    fig, axes = plt.subplots(1, L, figsize=(2.2 * L + 1, 3.2), sharey=True)
    for l in range(L):
        ax = axes[l]
        im = ax.imshow(u[:, l, :], vmin=0, vmax=max(0.5, u.max()), cmap="viridis", aspect="auto")
        ax.set_title(f"layer {l}")
        ax.set_xticks(range(u.shape[2]))
        ax.set_xlabel("expert")
        ax.set_yticks(range(len(doms)))
        ax.set_yticklabels(doms)
    fig.colorbar(im, ax=list(axes), label="share of routed tokens")
    fig.suptitle("debian-moe: expert usage per domain (calibration split)", y=1.04)
    fig.savefig(path, dpi=80, bbox_inches="tight")


if __name__ == "__main__":
    main()
