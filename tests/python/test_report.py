"""moelab report: paper-style tables (Markdown, CSV, LaTeX, HTML, JSON) and plots from a
finished sweep. Built once per module from a small real sweep on the mixtral fixture
(3 criteria x 2 ratios, one-shot for all and iterative for Min-EAN, 2 seeds, a 2-shot
recovery), then checked against the sweep's own records: every cell is the mean over seeds
of the eval records' metric, the std the sample std, the best per column the right one, the
Kendall tau matrix a hand computation; the report is the same from a copy of the results
directory elsewhere; the HTML renders in headless Chromium; the LaTeX compiles (pdflatex)."""
import base64
import csv
import io
import json
import math
import os
import re
import shutil
import statistics
import subprocess

import pytest
import yaml

from helpers import REPO, mixtral_with_tokenizer, tau_b
from page_layout import chromium, layout
from sweep_fixtures import plan, records, write_sweep

TASKS = [REPO / "configs" / "tasks" / "tiny_arith.jsonl", REPO / "configs" / "tasks" / "tiny_words.jsonl"]
TASK_NAMES = ["tiny_arith", "tiny_words"]


@pytest.fixture(scope="module")
def sweep(fixtures, moelab_bin, tmp_path_factory):
    """The finished sweep and its default report (RESULTS/report)."""
    d = tmp_path_factory.mktemp("report")
    model = mixtral_with_tokenizer(fixtures, d / "mixtral")[0]
    spec = write_sweep(
        d, model, name="rep", criteria=["EAN", "Max-RWN", "Random"], recovery=["none", {"kshot": 2}], seeds=[0, 1],
        exclude=[{"procedure": "iterative", "recovery": "kshot-2"}, {"procedure": "iterative", "criterion": "Max-RWN"},
                 {"procedure": "iterative", "criterion": "Random"}, {"recovery": "kshot-2", "seed": 1}],
        eval={"perplexity": [{"name": "wiki", "data": "wiki.txt"}], "tasks": [str(t) for t in TASKS],
              "max_length": 16})
    results = d / "results"
    subprocess.run([moelab_bin, "sweep", "run", spec, "--results", results, "--jobs", "2"], check=True,
                   capture_output=True, timeout=600)
    assert all(r["state"] == "done" for r in records(results).values())
    out = subprocess.run([moelab_bin, "report", results], check=True, capture_output=True, text=True, timeout=300)
    assert "-> " in out.stdout
    return results


# ---- reading what the sweep wrote and what the report wrote ----

def eval_values(results):
    """eval job -> (tags, {column metric label: value}) from the eval records themselves."""
    out = []
    for job in plan(results)["jobs"]:
        if job["kind"] != "eval":
            continue
        vals = {}
        for line in (results / job["output"]).read_text().splitlines():
            r = json.loads(line)
            if r["kind"] == "perplexity":
                vals[f"{r['task']} PPL"] = r["metrics"]["perplexity"]
            elif r["kind"] == "multiple_choice":
                vals[r["task"]] = r["metrics"]["acc"]
        if all(t in vals for t in TASK_NAMES):
            vals["Avg"] = sum(vals[t] for t in TASK_NAMES) / len(TASK_NAMES)
        out.append((job["tags"], vals))
    return out


def read_csv(path):
    return list(csv.DictReader(io.StringIO(path.read_text())))


def pct(ratio):
    return f"{float(ratio) * 100:g}%"


def proc_label(p):
    return "Lottery" if p == "lottery" else p


def rec_label(r):
    return f"{r[6:]}-shot" if r.startswith("kshot-") else r


def groups(results):
    """(criterion, ratio, procedure, recovery) -> metric -> [values in seed order]."""
    g = {}
    for tags, vals in sorted(eval_values(results), key=lambda x: int(x[0].get("seed", 0))):
        base = tags["criterion"] == "none"
        key = (tags["criterion"], None if base else tags["ratio"], None if base else tags["procedure"],
               tags["recovery"])
        for m, v in vals.items():
            g.setdefault(key, {}).setdefault(m, []).append(v)
    return g


def row_for(table_id, rows, crit, proc, rec):
    """The CSV row of a table for a grid point (None when the table does not show it)."""
    name = "Full model" if crit == "none" else crit
    for row in rows:
        if row["Criterion"] != name:
            continue
        if table_id == "criteria":
            if rec == "none" and (crit == "none" or proc == "one-shot"):
                return row
        elif table_id == "procedures":
            if rec == "none" and row["Procedure"] == ("-" if crit == "none" else proc_label(proc)):
                return row
        elif table_id == "recovery":
            if row["Recovery"] == rec_label(rec) and row["Procedure"] == ("-" if crit == "none" else proc_label(proc)):
                return row
    return None


def close(a, b):
    return a == b or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)


# ---- tests ----

def test_every_eval_number_is_in_the_tables_as_mean_and_std_over_seeds(sweep):
    tables = sweep / "report" / "tables"
    assert {p.name for p in tables.glob("*.csv")} >= {"criteria.csv", "procedures.csv", "recovery.csv"}
    ratios = ["0.25", "0.5"]
    checked, seen_jobs = 0, 0
    g = groups(sweep)
    for (crit, ratio, proc, rec), metrics in g.items():
        placed = False
        for table_id in ("criteria", "procedures", "recovery"):
            rows = read_csv(tables / f"{table_id}.csv")
            row = row_for(table_id, rows, crit, proc, rec)
            if row is None:
                continue
            placed = True
            for r in ([ratio] if ratio else ratios):  # the unpruned model fills every ratio group
                for m, vals in metrics.items():
                    col = f"{pct(r)} {m}"
                    assert close(float(row[col]), statistics.fmean(vals) if len(vals) > 1 else vals[0]), (table_id, col)
                    if len(vals) > 1:
                        assert close(float(row[col + " std"]), statistics.stdev(vals)), (table_id, col)
                    elif col + " std" in row:
                        assert row[col + " std"] == ""
                    checked += 1
        assert placed, (crit, ratio, proc, rec)
        seen_jobs += len(next(iter(metrics.values())))
    n_evals = sum(j["kind"] == "eval" for j in plan(sweep)["jobs"])
    assert seen_jobs == n_evals == 22
    assert checked > 100
    # k-shot evaluations have no perplexity: their cells are empty, not zero.
    rec_rows = read_csv(tables / "recovery.csv")
    shot = next(r for r in rec_rows if r["Criterion"] == "Min-EAN" and r["Recovery"] == "2-shot")
    assert shot["25% wiki PPL"] == "" and shot["25% tiny_arith"] != ""
    # The criteria table is MC-Suite Table 1's layout: Min-/Max- rows, ratio column groups.
    crit_rows = read_csv(tables / "criteria.csv")
    assert [r["Criterion"] for r in crit_rows] == ["Full model", "Min-EAN", "Max-RWN", "Min-Random"]
    assert list(crit_rows[0])[:5] == ["Criterion", "25% wiki PPL", "25% wiki PPL std", "25% tiny_arith",
                                      "25% tiny_arith std"]
    assert [(r["Criterion"], r["Procedure"]) for r in read_csv(tables / "procedures.csv")][:3] == [
        ("Full model", "-"), ("Min-EAN", "one-shot"), ("Min-EAN", "iterative")]


def test_seeds_give_a_mean_and_a_sample_std(sweep):
    # Random scores depend on the seed: its one-shot cells average two different models.
    report = json.loads((sweep / "report" / "report.json").read_text())
    crit = next(t for t in report["tables"] if t["id"] == "criteria")
    row = next(r for r in crit["rows"] if r["labels"] == ["Min-Random"])
    ppl = [c for c, col in zip(row["cells"], crit["columns"]) if col["label"] == "wiki PPL"]
    assert all(c["n"] == 2 for c in ppl) and any(c["std"] > 0 for c in ppl)
    g = groups(sweep)
    vals = g[("Min-Random", "0.5", "one-shot", "none")]["wiki PPL"]
    assert len(vals) == 2 and vals[0] != vals[1]
    assert close(ppl[1]["mean"], (vals[0] + vals[1]) / 2)
    assert close(ppl[1]["std"], abs(vals[0] - vals[1]) / math.sqrt(2))  # sample std of two values
    md = (sweep / "report" / "tables" / "criteria.md").read_text()
    line = next(l for l in md.splitlines() if l.startswith("| Min-Random |"))
    assert f"{(vals[0] + vals[1]) / 2:.2f}" in line and "\u00b1" in line
    # Iterative pruning does not depend on the seed: one job, n = 1.
    proc = next(t for t in report["tables"] if t["id"] == "procedures")
    it = next(r for r in proc["rows"] if r["labels"] == ["Min-EAN", "iterative"])
    assert all(c is None or c["n"] == 1 for c in it["cells"])


def test_best_per_column_is_marked(sweep):
    report = json.loads((sweep / "report" / "report.json").read_text())
    for t in report["tables"]:
        md_rows = [l for l in (sweep / "report" / "tables" / f"{t['id']}.md").read_text().splitlines()
                   if l.startswith("| ") and not l.startswith("| Criterion")]
        assert len(md_rows) == len(t["rows"])
        nl = len(t["row_headers"])
        for ci, col in enumerate(t["columns"]):
            cells = [(r, r["cells"][ci]) for r in t["rows"]]
            if not col["mark_best"]:
                assert not any(c and c["best"] for _, c in cells)
                continue
            means = [c["mean"] for r, c in cells if c and not r["baseline"]]
            best = min(means) if col["lower_is_better"] else max(means)
            for (r, c), md in zip(cells, md_rows):
                md_cell = [x.strip() for x in md.strip("|").split("|")][nl + ci]
                want = bool(c) and not r["baseline"] and c["mean"] == best
                assert bool(c and c["best"]) == want, (t["id"], col, r["labels"])
                assert md_cell.startswith("**") == want, (t["id"], md_cell)
    # Perplexity: lower is better; the best one-shot row is the lowest mean at 50%.
    g = groups(sweep)
    crit = read_csv(sweep / "report" / "tables" / "criteria.csv")
    lowest = min(statistics.fmean(g[(c, "0.5", "one-shot", "none")]["wiki PPL"]) for c in
                 ("Min-EAN", "Max-RWN", "Min-Random"))
    md = (sweep / "report" / "tables" / "criteria.md").read_text()
    assert f"**{lowest:.2f}**" in md
    assert any(close(float(r["50% wiki PPL"]), lowest) for r in crit)


def test_kendall_tau_matrix_matches_a_hand_computation(sweep):
    jobs = plan(sweep)["jobs"]
    score_jobs = [j for j in jobs if j["kind"] == "score"]
    assert len(score_jobs) == 2  # one per seed
    for sj in score_jobs:
        seed = sj["args"][sj["args"].index("--seed") + 1]
        table = read_csv(sweep / "report" / "tables" / f"kendall-c-seed{seed}.csv")
        scores = json.loads((sweep / sj["output"]).read_text())["criteria"]
        assert [r["Criterion"] for r in table] == ["EAN", "RWN", "Random"]  # the sweep's order
        for row in table:
            for other in ("EAN", "RWN", "Random"):
                a, b = scores[row["Criterion"]]["layers"], scores[other]["layers"]
                taus = [t for t in (tau_b(a[l], b[l]) for l in a) if t is not None]
                assert close(float(row[other]), sum(taus) / len(taus)), (row["Criterion"], other)
        assert all(float(r[r["Criterion"]]) == 1.0 for r in table)
    # Random changes with the seed, EAN and RWN do not.
    t0 = read_csv(sweep / "report" / "tables" / "kendall-c-seed0.csv")
    t1 = read_csv(sweep / "report" / "tables" / "kendall-c-seed1.csv")
    assert t0[0]["RWN"] == t1[0]["RWN"] and t0[0]["Random"] != t1[0]["Random"]


def test_overlap_tables_match_a_hand_computation(sweep):
    """Per score set and ratio: the share of the experts both criteria drop (with their
    directions) over all MoE layers, as `moelab score --agreement` computes it."""
    jobs = plan(sweep)["jobs"]
    for sj in (j for j in jobs if j["kind"] == "score"):
        seed = sj["args"][sj["args"].index("--seed") + 1]
        scores = json.loads((sweep / sj["output"]).read_text())["criteria"]
        labels = {"Min-EAN": "EAN", "Max-RWN": "RWN", "Min-Random": "Random"}

        def drops(label, layer, ratio):
            s = scores[labels[label]]["layers"][layer]
            key = [-x for x in s] if label.startswith("Max") else s
            n = int(math.floor(ratio * len(s) + 0.5))
            return set(sorted(range(len(s)), key=lambda e: (key[e], e))[:n])

        for ratio in (0.25, 0.5):
            table = read_csv(sweep / "report" / "tables" / f"overlap-c-seed{seed}-r{ratio:g}.csv")
            assert [r["Criterion"] for r in table] == list(labels)
            for row in table:
                for other in labels:
                    layers = scores["EAN"]["layers"]
                    common = sum(len(drops(row["Criterion"], l, ratio) & drops(other, l, ratio)) for l in layers)
                    total = sum(len(drops(row["Criterion"], l, ratio)) for l in layers)
                    assert close(float(row[other]), common / total), (ratio, row["Criterion"], other)


def test_plots_are_written_with_the_data_they_show(sweep):
    import h5py
    plots = sweep / "report" / "plots"
    manifest = json.loads((plots / "manifest.json").read_text())
    stems = [p["stem"] for p in manifest]
    assert stems == ["ppl-wiki", "scores-c-seed0", "scores-c-seed1", "usage", "kendall-c-seed0", "kendall-c-seed1"]
    for s in stems:
        assert (plots / f"{s}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in (plots / f"{s}.svg").read_bytes()[:1000]
    data = json.loads((plots / "plot_data.json").read_text())
    usage = next(f for f in data["figures"] if f["type"] == "usage")
    calib = next(j for j in plan(sweep)["jobs"] if j["kind"] == "calibrate")
    with h5py.File(sweep / calib["output"]) as f:
        assert usage["sets"][0]["calibration"] == "c"
        for layer, row in zip(usage["sets"][0]["layers"], usage["sets"][0]["tokens"]):
            assert row == f[f"layer_{layer:03d}/tokens_E"][:].tolist()
    ppl = next(f for f in data["figures"] if f["type"] == "ppl_vs_ratio")
    ean = next(s for s in ppl["series"] if s["label"] == "Min-EAN one-shot")
    g = groups(sweep)
    assert ean["x"] == [0.0, 0.25, 0.5]
    assert close(ean["y"][0], g[("none", None, None, "none")]["wiki PPL"][0])
    assert close(ean["y"][2], statistics.fmean(g[("Min-EAN", "0.5", "one-shot", "none")]["wiki PPL"]))


def test_a_copy_of_the_results_elsewhere_gives_the_same_report(sweep, moelab, tmp_path):
    copy = tmp_path / "elsewhere" / "renamed-results"
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("report"))
    moelab("report", copy)
    a, b = sweep / "report", copy / "report"
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) > 20
    for f in files_a:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    text = "".join((a / f).read_text(errors="replace") for f in files_a if f.suffix in (".md", ".csv", ".tex", ".json"))
    assert str(sweep) not in text and str(copy) not in text
    # Rebuilding in place replaces the report atomically: nothing left beside it.
    moelab("report", copy, "--no-plots", "--format", "csv")
    assert sorted(p.name for p in copy.iterdir() if p.name.startswith("report")) == ["report"]
    assert not (copy / "report" / "report.html").exists() and (copy / "report" / "tables" / "criteria.csv").exists()


def test_the_html_page_renders_in_headless_chromium(sweep, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("chromium is not installed (scripts/setup.sh installs it)")
    html = (sweep / "report" / "report.html").read_text()
    manifest = json.loads((sweep / "report" / "plots" / "manifest.json").read_text())
    # Every plot is embedded as a PNG that decodes.
    srcs = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(srcs) == len(manifest) == 6
    from PIL import Image
    for s in srcs:
        im = Image.open(io.BytesIO(base64.b64decode(s)))
        im.verify()
    assert html.count("<table") == 9  # criteria, procedures, recovery, 2 x Kendall, 2 seeds x 2 ratios of overlap
    # In the browser: every image loaded (complete with a natural width), then a screenshot.
    page = tmp_path / "page.html"
    probe = ("<script>window.addEventListener('load', () => { const imgs = [...document.images]; "
             "const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length; "
             "document.body.setAttribute('data-images', ok + '/' + imgs.length); });</script>")
    page.write_text(html.replace("</body>", probe + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=10000",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert 'data-images="6/6"' in dom.stdout, dom.stderr[-2000:]
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1280,2000",
                    (sweep / "report" / "report.html").as_uri()], capture_output=True, timeout=120)
    im = Image.open(shot).convert("RGB")
    assert im.size == (1280, 2000)
    colors = im.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50  # text, rules, plots: not a blank page
    white = max(colors)[0] / (im.size[0] * im.size[1])
    assert white < 0.97


def test_wide_tables_scroll_in_their_box_instead_of_running_off_the_page(sweep, tmp_path):
    """At a window narrower than the report's tables (600 px here; the quickstart's 20-column
    tables at 1400 px, tests/python/test_quickstart.py), every column stays readable: each wide
    table scrolls inside its own box and the page itself never scrolls sideways."""
    if not chromium():
        pytest.skip("chromium is not installed (scripts/setup.sh installs it)")
    got = layout(sweep / "report" / "report.html", 600, tmp_path, screenshot=tmp_path / "narrow.png")
    assert got["tables"] == 9 and got["wide"] >= 1, got
    assert got["unreadable"] == [] and not got["page_scrolls"], got


def test_the_latex_compiles(sweep, tmp_path):
    tex = (sweep / "report" / "report.tex").read_text()
    # booktabs rules; per ratio a column group of 4 (perplexity, 2 tasks, their average).
    assert "\\toprule" in tex and "\\bottomrule" in tex and "\\textbf{" in tex
    assert "\\multicolumn{4}{c}{25\\%} & \\multicolumn{4}{c}{50\\%}" in tex and "\\cmidrule(lr){2-5}" in tex
    if not shutil.which("pdflatex"):
        pytest.skip("pdflatex is not installed")
    d = tmp_path / "tex"
    shutil.copytree(sweep / "report", d)
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"], cwd=d,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:]
    assert (d / "report.pdf").stat().st_size > 1000


def test_two_sweeps_side_by_side(sweep, moelab, tmp_path):
    # The second sweep: the same grid with other numbers (perplexities x 2, an accuracy changed).
    other = tmp_path / "other"
    shutil.copytree(sweep, other, ignore=shutil.ignore_patterns("report"))
    p = json.loads((other / "plan.json").read_text())
    p["name"] = "other"
    (other / "plan.json").write_text(json.dumps(p))
    for f in (other / "eval").glob("*.jsonl"):
        lines = []
        for line in f.read_text().splitlines():
            r = json.loads(line)
            if r["kind"] == "perplexity":
                r["metrics"]["perplexity"] *= 2
            lines.append(json.dumps(r))
        f.write_text("\n".join(lines) + "\n")
    out = tmp_path / "cmp"
    moelab("report", sweep, "--compare", other, "--out", out)
    rows = read_csv(out / "tables" / "compare.csv")
    g = groups(sweep)
    assert len(rows) == len(g)
    base = next(r for r in rows if r["Criterion"] == "Full model" and r["Recovery"] == "none")
    v = g[("none", None, None, "none")]["wiki PPL"][0]
    assert close(float(base["wiki PPL rep"]), v) and close(float(base["wiki PPL other"]), 2 * v)
    assert close(float(base["wiki PPL diff"]), 2 * v - v)
    assert float(base["tiny_arith diff"]) == 0
    row = next(r for r in rows if (r["Criterion"], r["Ratio"], r["Procedure"], r["Recovery"]) ==
               ("Min-Random", "50%", "one-shot", "none"))
    assert close(float(row["wiki PPL rep"]), statistics.fmean(g[("Min-Random", "0.5", "one-shot", "none")]["wiki PPL"]))
    assert "compare-ppl-wiki" in (out / "plots" / "manifest.json").read_text()
    assert "Two sweeps side by side: rep vs other" in (out / "report.md").read_text()


def test_without_matplotlib_the_tables_are_still_written(sweep, moelab_bin, tmp_path):
    fake = tmp_path / "fake"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    env = dict(os.environ, PYTHONPATH=str(fake))
    out = tmp_path / "r"
    r = subprocess.run([moelab_bin, "report", sweep, "--out", out], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "plots skipped" in r.stdout and "matplotlib" in r.stdout
    assert (out / "tables" / "criteria.csv").read_text() == (sweep / "report" / "tables" / "criteria.csv").read_text()
    assert not list((out / "plots").glob("*.png"))
    assert "plots skipped: matplotlib cannot be imported" in (out / "report.html").read_text()


def test_bad_inputs_fail_with_one_line_naming_the_file_or_field(sweep, moelab, tmp_path):
    def fails(*args, expect):
        r = moelab("report", *args, check=False)
        assert r.returncode != 0, args
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and expect in lines[0], r.stderr
    fails(tmp_path, expect="not a sweep results directory")
    fails(tmp_path / "nope", expect="no such results directory")
    fails(sweep, "--format", "md,pdf", expect='--format: "pdf" is not md, csv, tex or html')
    fails(sweep, "--acc-metric", "f1", expect="--acc-metric")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    fails(sweep, "--out", tmp_path / "mine", expect="exists and is not a moelab report")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
    fails(sweep, "--out", sweep.parent, expect="cannot hold the results directory")

    bad = tmp_path / "bad"
    shutil.copytree(sweep, bad, ignore=shutil.ignore_patterns("report"))
    plan_text = (bad / "plan.json").read_text()
    (bad / "plan.json").write_text("{not json")
    fails(bad, expect="plan.json: the sweep plan is not valid JSON")
    p = json.loads(plan_text)
    ev = next(i for i, j in enumerate(p["jobs"]) if j["kind"] == "eval")
    p["jobs"][ev]["tags"]["ratio"] = "half"
    (bad / "plan.json").write_text(json.dumps(p))
    fails(bad, expect=f'plan.json: jobs[{ev}].tags.ratio: "half" is not a fraction')
    del p["jobs"][ev]["tags"]["ratio"]
    (bad / "plan.json").write_text(json.dumps(p))
    fails(bad, expect=f"plan.json: jobs[{ev}].tags.ratio: missing")
    (bad / "plan.json").write_text(plan_text)
    job = p["jobs"][ev]
    (bad / job["output"]).write_text('{"format": 1}\n')
    fails(bad, expect=job["output"])
    (bad / job["output"]).unlink()
    fails(bad, expect="missing, though the job's record says done")
    (bad / "jobs" / f"{job['id']}.json").write_text('{"state": "exploded"}')
    fails(bad, expect='state: "exploded" is not done or failed')
    # A job that is not done is a note, not an error: its cells are simply empty.
    (bad / "jobs" / f"{job['id']}.json").unlink()
    r = moelab("report", bad, "--no-plots")
    assert "1 jobs of the sweep are not done" in r.stdout
    assert f"not run: {job['label']} ({job['id']})" in (bad / "report" / "report.md").read_text()


def test_help_has_examples(moelab):
    out = moelab("report", "--help").stdout
    assert "moelab report results/quickstart" in out and "--compare" in out and "--format" in out


def test_paper_configs_validate(fixtures, moelab, tmp_path):
    paper = REPO / "configs" / "paper"
    # The Mixtral-8x7B spec as shipped, with a site/ folder laid out as its README says.
    site = tmp_path / "site"
    (site / "models").mkdir(parents=True)
    (site / "data").mkdir()
    (site / "tasks").mkdir()
    os.symlink(fixtures / "models" / "mixtral", site / "models" / "Mixtral-8x7B-v0.1")
    for f in ("c4-validation.jsonl", "c4-validation-eval.jsonl", "wikitext-2-test.txt"):
        (site / "data" / f).write_text('{"text": "hello"}\n')
    for t in ("arc_challenge", "arc_easy", "boolq", "hellaswag", "openbookqa", "rte", "winogrande"):
        shutil.copy(TASKS[0], site / "tasks" / f"{t}.jsonl")
    shutil.copy(paper / "mixtral-8x7b-tables1-2.yaml", tmp_path)
    g = json.loads(moelab("sweep", "plan", tmp_path / "mixtral-8x7b-tables1-2.yaml", "--json", "-").stdout)
    mc_suite = ["EWS", "RWN", "WSR", "EWN", "EUF", "ECC", "EVTC", "ETS", "EAS", "EAE", "EAO", "EAN",
                "EGS", "EGE", "EGO", "EGN"]
    prunes = [j for j in g["jobs"] if j["kind"] == "prune"]
    assert g["grid_points"] == 16 * 2 * 2 * 3 == len(prunes)
    assert {(j["tags"]["criterion"], j["tags"]["ratio"], j["tags"]["procedure"]) for j in prunes} == {
        (f"{d}-{c}", r, p) for c in mc_suite for d in ("Min", "Max") for r in ("0.25", "0.5")
        for p in ("one-shot", "iterative", "lottery")}
    cal = next(j for j in g["jobs"] if j["kind"] == "calibrate")
    assert cal["args"][cal["args"].index("--seq-len") + 1] == "2048"
    assert cal["args"][cal["args"].index("--num-samples") + 1] == "256"
    assert cal["resources"] == {"ranks": 8, "gpus": 8, "mem": "480G", "time": "08:00:00"}
    assert prunes[0]["resources"]["time"] == "24:00:00"
    assert all(j["args"][-2:] == ["--device", "cuda"] for j in g["jobs"] if j["kind"] != "score")
    # The small spec as shipped: the same structure on the default model, its corpus and tasks.
    g = json.loads(moelab("sweep", "plan", paper / "small-tables1-2.yaml", "--json", "-").stdout)
    prunes = [j for j in g["jobs"] if j["kind"] == "prune"]
    crits = {j["tags"]["criterion"] for j in prunes}
    assert crits == {f"{d}-{c}" for c in mc_suite for d in ("Min", "Max")}
    assert sorted({j["tags"]["procedure"] for j in prunes}) == ["iterative", "lottery", "one-shot"]
    assert len(prunes) == 32 * 2 * 3
    lottery = next(j for j in prunes if j["tags"]["procedure"] == "lottery")["args"]
    assert lottery[lottery.index("--lottery-start-tokens") + 1] == "4096"
