#!/usr/bin/env python3
"""The plots of `moelab report` (results/report/report_plots.h describes them).

    python3 results/report/plots.py PLOT_DATA.json OUT_DIR

reads the figures moelab wrote into PLOT_DATA.json, draws each as OUT_DIR/<stem>.png and
OUT_DIR/<stem>.svg, and writes OUT_DIR/manifest.json ([{stem, title, caption}], in order).
Exit status 3 (and one line on stderr) when matplotlib cannot be imported: the report is
then written without plots. Output does not depend on the time or the machine: SVG ids
come from a fixed salt, no dates are stored.
"""
import json
import math
import pathlib
import sys

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker
except Exception as e:  # ImportError, or a broken install
    print(f"matplotlib cannot be imported ({type(e).__name__}: {e}); install it with pip install matplotlib",
          file=sys.stderr)
    sys.exit(3)

plt.rcParams.update({
    "svg.hashsalt": "moelab-report",
    "svg.fonttype": "path",
    "font.size": 9,
    "axes.titlesize": 10,
    "figure.dpi": 100,
})

LINESTYLES = {"one-shot": "-", "iterative": "--", "lottery": ":"}


def save(fig, out, stem):
    fig.savefig(out / f"{stem}.png", dpi=110, metadata={"Software": None})
    fig.savefig(out / f"{stem}.svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)


def ppl_vs_ratio(fig_data, out):
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    colors = {}
    for s in fig_data["series"]:
        color = colors.setdefault(s["criterion"], f"C{len(colors) % 10}")
        style = "--" if s.get("dashed") else LINESTYLES.get(s["procedure"], "-.")
        yerr = s["yerr"] if any(e for e in s["yerr"]) else None
        ax.errorbar([100 * x for x in s["x"]], s["y"], yerr=yerr, label=s["label"], color=color, linestyle=style,
                    marker="o", markersize=3, capsize=2, linewidth=1.2)
    ax.set_xlabel("experts dropped per MoE layer (%)")
    ax.set_ylabel("perplexity")
    ys = [y for s in fig_data["series"] for y in s["y"] if y is not None]
    if ys and min(ys) > 0 and max(ys) / min(ys) > 5:  # perplexity explodes at high ratios: log scale
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_title(fig_data["title"])
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if len(fig_data["series"]) > 8 else 1)
    return fig


def normalise_rows(rows):
    out = []
    for row in rows:
        vals = [v for v in row if v is not None and not math.isnan(v)]
        lo, hi = (min(vals), max(vals)) if vals else (0.0, 0.0)
        out.append([float("nan") if v is None else (0.5 if hi == lo else (v - lo) / (hi - lo)) for v in row])
    return out


def layer_ticks(ax, layers):
    step = max(1, (len(layers) + 15) // 16)  # at most ~16 labels
    ax.set_yticks(range(0, len(layers), step), [str(l) for l in layers[::step]])


def score_heatmaps(fig_data, out):
    crits = fig_data["criteria"]
    ncols = min(4, len(crits))
    nrows = (len(crits) + ncols - 1) // ncols
    height = min(6.0, 0.3 * max(4, len(crits[0]["layers"])) + 0.8)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols + 1, height * nrows + 0.6), squeeze=False,
                             layout="constrained")
    im = None
    for ax, c in zip(axes.flat, crits):
        mat = normalise_rows(c["scores"])
        width = max((len(r) for r in mat), default=0)
        mat = [r + [float("nan")] * (width - len(r)) for r in mat]
        im = ax.imshow(mat, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(c["name"])
        ax.set_xlabel("expert")
        ax.set_ylabel("layer")
        layer_ticks(ax, c["layers"])
    for ax in list(axes.flat)[len(crits):]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="score, min-max per layer")
    fig.suptitle(fig_data["title"])
    return fig


def usage(fig_data, out):
    sets = fig_data["sets"]
    height = min(6.0, 0.3 * max(4, len(sets[0]["layers"])) + 0.8)
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets) + 1, height + 0.8), squeeze=False,
                             layout="constrained")
    shares = []
    for s in sets:
        mat = []
        for row in s["tokens"]:
            total = sum(row)
            mat.append([v / total if total else 0.0 for v in row])
        width = max((len(r) for r in mat), default=0)
        shares.append([r + [float("nan")] * (width - len(r)) for r in mat])
    # One colour scale for all sets, so that domains compare.
    vmax = max((v for mat in shares for r in mat for v in r if not math.isnan(v)), default=1.0) or 1.0
    im = None
    for ax, s, mat in zip(axes.flat, sets, shares):
        im = ax.imshow(mat, aspect="auto", cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(f"{s['calibration']} ({s['num_tokens']} tokens)")
        ax.set_xlabel("expert")
        ax.set_ylabel("layer")
        layer_ticks(ax, s["layers"])
        fig.colorbar(im, ax=ax, shrink=0.8, label="share of routed pairs")
    fig.suptitle(fig_data["title"])
    return fig


def kendall(fig_data, out):
    labels, mat = fig_data["labels"], fig_data["matrix"]
    n = len(labels)
    size = max(3.5, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size), layout="constrained")
    vals = [[float("nan") if v is None else v for v in row] for row in mat]
    im = ax.imshow(vals, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    if n <= 16:
        for i in range(n):
            for j in range(n):
                if not math.isnan(vals[i][j]):
                    ax.text(j, i, f"{vals[i][j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if abs(vals[i][j]) > 0.6 else "black")
    fig.colorbar(im, ax=ax, shrink=0.8, label="Kendall tau-b")
    ax.set_title(fig_data["title"], fontsize=9)
    return fig


DRAW = {"ppl_vs_ratio": ppl_vs_ratio, "score_heatmaps": score_heatmaps, "usage": usage, "kendall": kendall}


def main():
    if len(sys.argv) != 3:
        print("usage: plots.py PLOT_DATA.json OUT_DIR", file=sys.stderr)
        return 2
    data = json.loads(pathlib.Path(sys.argv[1]).read_text())
    out = pathlib.Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for f in data["figures"]:
        draw = DRAW.get(f["type"])
        if draw is None:
            print(f"unknown figure type {f['type']!r}", file=sys.stderr)
            return 1
        save(draw(f, out), out, f["stem"])
        manifest.append({"stem": f["stem"], "title": f["title"], "caption": f["caption"]})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
