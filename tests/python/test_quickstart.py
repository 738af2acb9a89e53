"""The README's first command, run as a new user runs it: `scripts/quickstart.sh` (setup and
build are no-ops here: they ran before the tests), outputs moved to a temporary folder with
MOELAB_QUICKSTART_OUT and otherwise the same script. It must exit 0, print the report's
procedure table and leave the report it promises, readable at a laptop's window width."""
import os
import re
import subprocess

import pytest

from helpers import REPO
from page_layout import chromium, layout


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    out = tmp_path_factory.mktemp("quickstart")
    env = dict(os.environ, MOELAB_QUICKSTART_OUT=str(out))
    r = subprocess.run(["bash", "scripts/quickstart.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=1400)
    return r, out


def test_quickstart_exits_0_and_prints_the_report_table(quickstart):
    r, out = quickstart
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    # every step ran, in order
    steps = ["== moelab inspect", "== moelab forward", "== moelab prune", "== transformers loads",
             "== moelab sweep plan", "== moelab sweep run", "== moelab report"]
    positions = [r.stdout.find(s) for s in steps]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), positions
    # the plan's first line, then the report's procedure table as the README shows it
    assert re.search(r"\b51 jobs\b", r.stdout), r.stdout[r.stdout.find("== moelab sweep plan"):][:400]
    table = r.stdout[r.stdout.find("### Procedures"):]
    assert "| Criterion | Procedure |" in table
    rows = [l for l in table.splitlines() if l.startswith("| Min-") or l.startswith("| Max-")]
    assert len(rows) == 8, table[:2000]  # EAN, EUF, REAP x 2 procedures; Max-RWN, Random one-shot
    assert "Full report:" in r.stdout


def test_quickstart_leaves_the_report_it_promises(quickstart):
    r, out = quickstart
    assert r.returncode == 0
    report = out / "results" / "report"
    for f in ("report.md", "report.html", "report.tex"):
        assert (report / f).stat().st_size > 1000, f
    assert list((report / "plots").glob("*.png"))
    # the pruned checkpoint transformers loaded
    assert (out / "pruned" / "config.json").exists()


def test_the_quickstart_report_is_readable_at_1400_px(quickstart, tmp_path):
    """Its wide tables (10 domains x 2 ratios) scroll inside their box; the page does not run
    off the right edge (a screenshot is left beside for a person to look at)."""
    if not chromium():
        pytest.skip("chromium is not installed (scripts/setup.sh installs it)")
    r, out = quickstart
    assert r.returncode == 0
    shot = out / "results" / "report" / "screenshot-1400.png"
    got = layout(out / "results" / "report" / "report.html", 1400, tmp_path, screenshot=shot)
    assert got["tables"] >= 5 and got["wide"] >= 1, got  # the check saw wide tables
    assert got["unreadable"] == [] and not got["page_scrolls"], got
    assert shot.stat().st_size > 10000
