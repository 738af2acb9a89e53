"""The report's "papers' claims" table (results/claims.h, results/report/report_claims.h): claims
written in a sweep spec travel in plan.json and are evaluated from the finished
evaluations. Checked on a results directory whose numbers are chosen by hand (so that
every verdict and every measured number is known in advance), on a real sweep (the
verdict equals one computed here from its eval records), and against bad claims, each
refused by `moelab sweep plan` in one line naming the field."""
import csv
import io
import json
import pathlib
import re

import pytest
import yaml

from helpers import mixtral_with_tokenizer
from sweep_fixtures import plan, write_sweep

PAPER = "A paper (arXiv 0000.00000)"


def record(task, kind, metrics):
    return json.dumps({"format": 1, "model": "m", "task": task, "kind": kind, "metrics": metrics, "n_items": 10,
                       "n_tokens": 100, "settings": {}, "details": {}, "moelab_version": "test", "world_size": 1,
                       "timestamp": "2026-12-06T00:00:00Z"})


def write_results(d, points, claims):
    """A finished sweep's results directory: one done eval job per point (tags, code
    perplexity, accuracies of tasks t1 and t2)."""
    d.mkdir()
    (d / "jobs").mkdir()
    (d / "eval").mkdir()
    jobs = []
    for i, (tags, ppl, t1, t2) in enumerate(points):
        jid = f"eval-{i}"
        full = {"model": "/models/m", "criterion": "none", "ratio": "0", "procedure": "none", "recovery": "none"}
        full.update(tags)
        jobs.append({"id": jid, "kind": "eval", "label": jid, "output": f"eval/{jid}.jsonl", "args": [], "deps": [],
                     "tags": full})
        (d / "jobs" / f"{jid}.json").write_text(json.dumps({"state": "done"}))
        (d / "eval" / f"{jid}.jsonl").write_text("\n".join([
            record("code", "perplexity", {"perplexity": ppl}),
            record("t1", "multiple_choice", {"acc": t1}),
            record("t2", "multiple_choice", {"acc": t2})]) + "\n")
    (d / "plan.json").write_text(json.dumps({"name": "claims", "jobs": jobs, "claims": claims}))


def pruned(crit, ratio, proc="one-shot", rec="none", cal="c"):
    return {"criterion": crit, "ratio": ratio, "procedure": proc, "recovery": rec, "calibration": cal}


# (tags, code PPL, t1 acc, t2 acc). Avg = (t1 + t2) / 2.
POINTS = [
    ({}, 8.0, 0.70, 0.50),                                           # unpruned: avg 0.60
    ({"recovery": "kshot-3"}, 7.5, 0.72, 0.52),                     # unpruned, 3-shot: avg 0.62
    (pruned("Min-EAN", "0.25"), 10.0, 0.60, 0.50),                   # avg 0.55
    (pruned("Min-EUF", "0.25"), 9.0, 0.50, 0.40),                    # avg 0.45
    (pruned("Max-RWN", "0.25", cal=""), 11.0, 0.62, 0.50),           # avg 0.56 (weight criterion: no set)
    (pruned("Min-EAN", "0.5"), 12.0, 0.50, 0.40),                    # avg 0.45
    (pruned("Min-EUF", "0.5"), 13.0, 0.40, 0.30),                    # avg 0.35
    (pruned("Max-RWN", "0.5", cal=""), 20.0, 0.30, 0.30),            # avg 0.30
    (pruned("Min-EAN", "0.25", "iterative"), 9.5, 0.60, 0.52),       # avg 0.56
    (pruned("Min-EAN", "0.5", "iterative"), 12.5, 0.52, 0.40),       # avg 0.46
    (pruned("Min-EAN", "0.5", rec="kshot-3"), 11.0, 0.56, 0.44),     # avg 0.50
]

CLAIMS = [
    {"paper": PAPER, "claim": "EAN is the best criterion", "kind": "rank", "metric": "ppl:code",
     "select": {"criterion": "Min-EAN", "procedure": "one-shot", "recovery": "none"}, "among": "criterion"},
    {"paper": PAPER, "claim": "EAN is among the two best", "kind": "rank", "metric": "avg", "within": 2,
     "select": {"criterion": "Min-EAN", "procedure": "one-shot", "recovery": "none"}, "among": "criterion"},
    {"paper": PAPER, "claim": "iterative beats one-shot", "kind": "better", "metric": "ppl:code",
     "select": {"criterion": "Min-EAN", "procedure": "iterative"}, "versus": {"procedure": "one-shot"}},
    {"paper": PAPER, "claim": "keeps 90% of the accuracy at 25%", "kind": "retains", "metric": "avg", "at_least": 0.9,
     "select": {"criterion": "Min-EAN", "ratio": 0.25, "procedure": "one-shot", "recovery": "none"}},
    {"paper": PAPER, "claim": "keeps 90% of the perplexity at 25%", "kind": "retains", "metric": "ppl:code",
     "at_least": "0.9", "select": {"criterion": "Min-EAN", "ratio": "0.25", "procedure": "one-shot",
                                   "recovery": "none"}},
    {"paper": PAPER, "claim": "k-shot restores", "kind": "better", "metric": "avg",
     "select": {"criterion": "Min-EAN", "recovery": "kshot"}, "versus": {"recovery": "none"}},
    {"paper": PAPER, "claim": "3-shot keeps 80% of the 3-shot unpruned model", "kind": "retains", "metric": "avg",
     "at_least": 0.8, "select": {"recovery": "kshot-3"}},
    {"paper": PAPER, "claim": "instruction following suffers most", "kind": "not_measured",
     "reason": "the model is not instruction-tuned"},
    {"paper": PAPER, "claim": "a metric nobody wrote", "kind": "rank", "metric": "ppl:wiki",
     "select": {"criterion": "Min-EAN"}, "among": "criterion"},
]

# (measured, verdict) per claim, worked out by hand from POINTS.
EXPECTED = [
    ("25%: 10.00 (rank 2 of 3; best Min-EUF 9.00) no; 50%: 12.00 (rank 1 of 3) yes", "holds at 1 of 2 settings"),
    ("25%: 55.0 (rank 2 of 3; best Max-RWN 56.0) yes; 50%: 45.0 (rank 1 of 3) yes", "holds"),
    ("25%: 9.50 vs 10.00 yes; 50%: 12.50 vs 12.00 no", "holds at 1 of 2 settings"),
    ("55.0 = 91.7% of the unpruned 60.0 yes", "holds"),
    ("10.00 = 80.0% of the unpruned 8.00 no", "does not hold"),
    ("50.0 vs 45.0 yes", "holds"),
    ("50.0 = 80.6% of the unpruned 62.0 yes", "holds"),
    ("-", "not measured: the model is not instruction-tuned"),
    ("-", "not measured: no evaluation of this sweep wrote ppl:wiki"),
]


def claims_rows(report_dir):
    return list(csv.DictReader(io.StringIO((report_dir / "tables" / "claims.csv").read_text())))


def test_each_claim_kind_gives_the_verdict_and_numbers_worked_out_by_hand(moelab, tmp_path):
    write_results(tmp_path / "r", POINTS, CLAIMS)
    moelab("report", tmp_path / "r", "--no-plots", "--format", "md,csv")
    rows = claims_rows(tmp_path / "r" / "report")
    assert [r["claim"] for r in rows] == [c["claim"] for c in CLAIMS]
    assert [(r["measured"], r["verdict"]) for r in rows] == EXPECTED
    assert rows[0]["setting"] == ("code PPL (lower is better); criterion Min-EAN, procedure one-shot, recovery none "
                                  "is the best of the criteria")
    assert rows[2]["setting"].endswith("criterion Min-EAN, procedure iterative beats procedure one-shot")
    assert rows[3]["setting"] == "Avg; criterion Min-EAN, ratio 25%, procedure one-shot, recovery none keeps >= 90% " \
                                 "of the unpruned model"
    # First in the report, in every format.
    md = (tmp_path / "r" / "report" / "report.md").read_text()
    assert re.search(r"^### (.*)$", md, re.M).group(1) == "The papers' claims"
    assert "| 25%: 10.00 (rank 2 of 3; best Min-EUF 9.00) no; 50%: 12.00 (rank 1 of 3) yes | holds at 1 of 2 settings |" in md
    report = json.loads((tmp_path / "r" / "report" / "report.json").read_text())
    assert report["tables"][0]["id"] == "claims"


def test_a_claim_on_seeds_uses_the_mean_over_seeds(moelab, tmp_path):
    points = [({}, 8.0, 0.7, 0.5),
              ({**pruned("Min-EAN", "0.5"), "seed": "0"}, 10.0, 0.5, 0.5),
              ({**pruned("Min-EAN", "0.5"), "seed": "1"}, 12.0, 0.5, 0.5),   # mean 11.0
              ({**pruned("Min-EUF", "0.5"), "seed": "0"}, 11.5, 0.5, 0.5)]
    claim = {"paper": PAPER, "claim": "c", "kind": "rank", "metric": "ppl:code", "select": {"criterion": "Min-EAN"},
             "among": "criterion"}
    write_results(tmp_path / "r", points, [claim])
    moelab("report", tmp_path / "r", "--no-plots", "--format", "csv")
    assert [(r["measured"], r["verdict"]) for r in claims_rows(tmp_path / "r" / "report")] == [
        ("11.00 (rank 1 of 2) yes", "holds")]


def test_a_bad_claim_in_plan_json_is_one_line_naming_the_field(moelab, tmp_path):
    write_results(tmp_path / "r", POINTS, [{**CLAIMS[0], "kind": "best"}])
    p = moelab("report", tmp_path / "r", "--no-plots", check=False)
    assert p.returncode != 0
    assert p.stderr.strip().count("\n") == 0
    assert "plan.json" in p.stderr and 'claims[0].kind: "best" is not rank, better, retains or not_measured' in p.stderr


@pytest.fixture(scope="module")
def model(fixtures, tmp_path_factory):
    return mixtral_with_tokenizer(fixtures, tmp_path_factory.mktemp("claims") / "mixtral")[0]


def test_claims_of_a_real_sweep_travel_in_plan_json_and_match_its_records(model, moelab, tmp_path):
    claims = [{"paper": PAPER, "claim": "RWN beats random choice", "kind": "better", "metric": "ppl:wiki",
               "select": {"criterion": "Max-RWN"}, "versus": {"criterion": "Min-Random"}}]
    spec = write_sweep(tmp_path, model, name="claims", criteria=["Max-RWN", "Random"], ratios=[0.5],
                       procedures=["one-shot"], claims=claims)
    out = tmp_path / "results"
    moelab("sweep", "run", spec, "--results", out, "--jobs", "2")
    assert plan(out)["claims"] == [{**claims[0], "select": {"criterion": "Max-RWN"}}]
    ppl = {}
    for job in plan(out)["jobs"]:
        if job["kind"] == "eval":
            rec = json.loads((out / job["output"]).read_text().splitlines()[0])
            ppl[job["tags"]["criterion"]] = rec["metrics"]["perplexity"]
    moelab("report", out, "--no-plots", "--format", "csv")
    [row] = claims_rows(out / "report")
    a, b = ppl["Max-RWN"], ppl["Min-Random"]
    assert row["measured"] == f"{a:.2f} vs {b:.2f} {'yes' if a < b else 'no'}"
    assert row["verdict"] == ("holds" if a < b else "does not hold")


BAD = [
    ({"kind": "best"}, 'claims[0].kind: "best" is not rank, better, retains or not_measured'),
    ({"select": {"criterion": "Min-EUF"}}, 'claims[0].select.criterion: "Min-EUF" is not a criterion of this sweep'),
    ({"select": {"criterion": "Min-EAN", "ratio": 0.3}}, 'claims[0].select.ratio: "0.3" is not one of the sweep'),
    ({"select": {"criterion": "Min-EAN", "seed": 0}}, "claims[0].select.seed: not a grid key"),
    ({"metric": "ppl:nope"}, 'claims[0].metric: "ppl:nope" is no metric of this sweep'),
    ({"metric": "avg"}, 'claims[0].metric: "avg" is no metric of this sweep'),
    ({"among": "ratio"}, 'claims[0].among: "ratio" must be one of the select keys'),
    ({"within": 0}, "claims[0].within: must be a whole number >= 1"),
    ({"at_least": 0.9}, "claims[0].at_least: only for kind retains (this claim is rank)"),
    ({"kind": "better"}, "claims[0].among: only for kind rank (this claim is better)"),
    ({"kind": "retains", "among": None, "at_least": -1}, "claims[0].at_least: must be a fraction > 0"),
    ({"colour": "red"}, "claims[0].colour: unknown key"),
    ({"paper": ""}, "claims[0].paper: expected a non-empty string"),
]


@pytest.mark.parametrize("change,message", BAD, ids=[m.split(": ")[0] + str(i) for i, (_, m) in enumerate(BAD)])
def test_a_bad_claim_in_a_spec_is_refused_in_one_line_naming_the_field(model, moelab, tmp_path, change, message):
    claim = {"paper": PAPER, "claim": "c", "kind": "rank", "metric": "ppl:wiki", "select": {"criterion": "Min-EAN"},
             "among": "criterion"}
    claim.update(change)
    claim = {k: v for k, v in claim.items() if v is not None}
    spec = write_sweep(tmp_path, model, name="bad", claims=[claim])
    p = moelab("sweep", "plan", spec, check=False)
    assert p.returncode != 0
    assert p.stderr.strip().count("\n") == 0, p.stderr
    assert str(spec) in p.stderr and message in p.stderr, p.stderr
    # The same claim without the change is accepted.
    ok = write_sweep(tmp_path, model, name="ok", claims=[{"paper": PAPER, "claim": "c", "kind": "rank",
                                                          "metric": "ppl:wiki", "select": {"criterion": "Min-EAN"},
                                                          "among": "criterion"}])
    moelab("sweep", "plan", ok)
