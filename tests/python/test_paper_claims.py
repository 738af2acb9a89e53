"""The shipped paper specs run as a user runs them (`moelab sweep run` from the repository
root, then `moelab report`), and the report's claims table lists every claim of the spec
with numbers taken from the sweep's own eval records. About 16 minutes on 2 cores: a long
suite, run with MOELAB_LONG_TESTS=1 (scripts/test.sh)."""
import csv
import io
import json
import os
import re

import pytest
import yaml

from helpers import REPO

pytestmark = pytest.mark.skipif(os.environ.get("MOELAB_LONG_TESTS") != "1",
                                reason="long suite: MOELAB_LONG_TESTS=1 runs the paper specs (~16 min)")


def eval_numbers(results):
    """Every metric value of every eval record, as the report shows them (2 decimals for
    perplexity, accuracies and their averages x100 with 1)."""
    shown = set()
    plan = json.loads((results / "plan.json").read_text())
    for job in plan["jobs"]:
        if job["kind"] != "eval":
            continue
        accs = []
        for line in (results / job["output"]).read_text().splitlines():
            r = json.loads(line)
            if r["kind"] == "perplexity":
                shown.add(f"{r['metrics']['perplexity']:.2f}")
            elif r["kind"] == "multiple_choice":
                accs.append(r["metrics"]["acc"])
                shown.add(f"{r['metrics']['acc'] * 100:.1f}")
        if accs:
            shown.add(f"{sum(accs) / len(accs) * 100:.1f}")
    return shown


@pytest.mark.parametrize("spec", ["mc-suite-claims.yaml", "router-norm-change.yaml", "compressed-experts.yaml"])
def test_a_paper_spec_runs_and_its_report_states_every_claim_with_the_records_numbers(spec, moelab, tmp_path):
    results = tmp_path / "results"
    moelab("sweep", "run", f"configs/paper/{spec}", "--results", results, "--jobs", "2", cwd=REPO)
    moelab("report", results, "--no-plots", "--format", "md,csv")
    claims = yaml.safe_load((REPO / "configs" / "paper" / spec).read_text())["claims"]
    rows = list(csv.DictReader(io.StringIO((results / "report" / "tables" / "claims.csv").read_text())))
    assert [r["claim"] for r in rows] == [c["claim"] for c in claims]
    numbers = eval_numbers(results)
    for c, r in zip(claims, rows):
        if c["kind"] == "not_measured":
            assert r["verdict"] == "not measured: " + c["reason"]
            continue
        assert re.fullmatch(r"holds|does not hold|holds at \d+ of \d+ settings", r["verdict"]), r
        # Every number the claim shows is one of the sweep's records (percentages aside).
        shown = re.findall(r"(?<![\w.])(\d+\.\d+)(?!%)", r["measured"])
        assert shown and set(shown) <= numbers, (r["measured"], sorted(set(shown) - numbers))
    assert "### The papers' claims" in (results / "report" / "report.md").read_text()
