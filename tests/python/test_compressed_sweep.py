"""Compressed experts in sweeps (`compressed_experts: {main, variant}`): per model and main
count one `moelab compress` job, each recovery setting after it, the evaluation, tagged as a
criterion of its own (Compressed-main<k>, ratio 0, procedure compress). The method itself is
checked against the authors' code in test_compressed_experts.py; here: the job graph, that a
sweep's compressed model and its numbers are those of the documented commands run by hand,
the report and claims, and bad specs."""
import json

import pytest
import yaml

from helpers import mixtral_with_tokenizer
from sweep_fixtures import plan, records, write_sweep

FT = {"finetune": {"data": ["wiki.txt"], "steps": 2, "lr": 1.0e-3, "seq_len": 16, "batch_size": 2, "params": "full"}}


@pytest.fixture(scope="module")
def model(fixtures, tmp_path_factory):
    return mixtral_with_tokenizer(fixtures, tmp_path_factory.mktemp("ce") / "mixtral")[0]


def spec(tmp_path, model, **over):
    args = dict(name="ce", criteria=["Max-RWN"], ratios=[0.5], procedures=["one-shot"],
                compressed_experts={"main": [1]}, recovery=["none", FT])
    args.update(over)
    return write_sweep(tmp_path, model, **{k: v for k, v in args.items() if v is not None})


def test_the_plan_has_one_compress_job_per_main_count_shared_by_the_recovery_settings(model, moelab, tmp_path):
    g = json.loads(moelab("sweep", "plan", spec(tmp_path, model), "--json", "-").stdout)
    comp = [j for j in g["jobs"] if j["args"][0] == "compress"]
    assert len(comp) == 1 and comp[0]["kind"] == "prune"
    assert comp[0]["args"][:6] == ["compress", str(model), "--main", "1", "--variant", "official"]
    ft = [j for j in g["jobs"] if j["kind"] == "finetune" and comp[0]["id"] in j["deps"]]
    assert len(ft) == 1 and ft[0]["args"][ft[0]["args"].index("--params") + 1] == "full"
    evals = [j for j in g["jobs"] if j["kind"] == "eval" and j["tags"]["criterion"] == "Compressed-main1"]
    assert sorted(e["tags"]["recovery"] for e in evals) == ["finetune-full-2steps-lr0.001", "none"]
    assert all(e["tags"]["ratio"] == "0" and e["tags"]["procedure"] == "compress" for e in evals)
    # Pruned points are untouched: the same prune jobs as without compressed experts.
    base = json.loads(moelab("sweep", "plan", spec(tmp_path, model, name="base", compressed_experts=None), "--json",
                             "-").stdout)
    assert {j["id"] for j in base["jobs"]} < {j["id"] for j in g["jobs"]}
    # Two main counts and a variant; on a GPU sweep compress stays on the CPU (it takes no --device).
    g = json.loads(moelab("sweep", "plan", spec(tmp_path / "c", model, device="cuda",
                                                compressed_experts={"main": [1, 1], "variant": "moelab-v1"}),
                          "--json", "-").stdout)
    comp = [j for j in g["jobs"] if j["args"][0] == "compress"]
    assert len(comp) == 1 and "--device" not in comp[0]["args"] and "moelab-v1" in comp[0]["args"]


def test_a_sweeps_compressed_points_equal_the_documented_commands_and_reach_the_report(model, moelab, tmp_path):
    claims = [{"paper": "Compressed experts (arXiv 2503.00634)", "claim": "keeps 90%", "kind": "retains",
               "metric": "ppl:wiki", "select": {"criterion": "Compressed-main1", "recovery": "none"}, "at_least": 0.9}]
    s = spec(tmp_path, model, claims=claims,
             resources={"calibrate": {"ranks": 2, "mem": "1G", "time": "00:10:00"},
                        "prune": {"ranks": 2, "mem": "1G", "time": "00:10:00"},
                        "finetune": {"ranks": 1, "mem": "1G", "time": "00:10:00"},
                        "eval": {"ranks": 1, "mem": "1G", "time": "00:10:00"}})
    out = tmp_path / "results"
    moelab("sweep", "run", s, "--results", out, "--jobs", "2")
    assert all(r["state"] == "done" for r in records(out).values())
    jobs = plan(out)["jobs"]
    comp = next(j for j in jobs if j["args"][0] == "compress")
    # One process even with prune ranks 2 (compress is not an MPI program).
    log = (out / "logs" / f"{comp['id']}.log").read_text()
    assert "\n$ mpirun" not in log and "compress" in log
    cfg = json.loads((out / comp["output"] / "config.json").read_text())
    assert cfg["moelab_compressed_experts"] == {"main": 1, "variant": "official"}
    # The sweep's untrained compressed model evaluates as `moelab compress` + `moelab eval` by hand.
    moelab("compress", model, "--main", "1", "--out", tmp_path / "by-hand")
    moelab("eval", tmp_path / "by-hand", "--data", f"wiki:{tmp_path / 'wiki.txt'}", "--max-length", 16,
           "--results", tmp_path / "by-hand.jsonl")
    by_hand = json.loads((tmp_path / "by-hand.jsonl").read_text().splitlines()[0])["metrics"]["perplexity"]
    ev = {j["tags"]["recovery"]: j for j in jobs if j["kind"] == "eval" and j["tags"]["criterion"] == "Compressed-main1"}
    swept = json.loads((out / ev["none"]["output"]).read_text().splitlines()[0])["metrics"]["perplexity"]
    assert swept == by_hand
    # Fine-tuning (params full) trained the vectors too.
    from safetensors.torch import load_file
    ft = next(j for j in jobs if j["kind"] == "finetune" and comp["id"] in j["deps"])
    w = {}
    for f in (out / ft["output"]).glob("*.safetensors"):
        w.update(load_file(str(f)))
    ces = [v for k, v in w.items() if k.endswith("mlp.ces")]
    assert ces and any(not bool((c == 1).all()) for c in ces)
    # The report: a row of its own; the claim computed from the records.
    moelab("report", out, "--no-plots", "--format", "md,csv")
    md = (out / "report" / "report.md").read_text()
    assert "| Compressed-main1 |" in md
    unpruned = next(j for j in jobs if j["kind"] == "eval" and j["tags"]["criterion"] == "none")
    base = json.loads((out / unpruned["output"]).read_text().splitlines()[0])["metrics"]["perplexity"]
    row = (out / "report" / "tables" / "claims.csv").read_text().splitlines()[1]
    assert f"{swept:.2f} = {base / swept * 100:.1f}% of the unpruned {base:.2f}" in row
    assert row.endswith("holds" if base / swept >= 0.9 else "does not hold")


@pytest.mark.parametrize("value,message", [
    ({"main": [0]}, "compressed_experts.main[0]: must be >= 1"),
    ({"main": []}, "compressed_experts.main: give the main experts per token"),
    ({"main": [1], "variant": "fancy"}, 'compressed_experts.variant: "fancy" is not official or moelab-v1'),
    ({"main": [1], "ratio": 0.5}, "compressed_experts.ratio: unknown key"),
    ([1], "compressed_experts: expected a map"),
])
def test_a_bad_compressed_experts_section_is_one_line_naming_the_field(model, moelab, tmp_path, value, message):
    p = moelab("sweep", "plan", spec(tmp_path, model, compressed_experts=value), check=False)
    assert p.returncode != 0 and p.stderr.strip().count("\n") == 0, p.stderr
    assert message in p.stderr, p.stderr


def test_a_claim_may_name_compressed_points_but_not_unknown_ones(model, moelab, tmp_path):
    claim = {"paper": "P", "claim": "c", "kind": "retains", "metric": "ppl:wiki", "at_least": 0.9,
             "select": {"criterion": "Compressed-main1", "ratio": 0, "procedure": "compress"}}
    moelab("sweep", "plan", spec(tmp_path, model, claims=[claim]))
    claim["select"]["criterion"] = "Compressed-main2"
    p = moelab("sweep", "plan", spec(tmp_path / "b", model, claims=[claim]), check=False)
    assert 'claims[0].select.criterion: "Compressed-main2" is not a criterion of this sweep' in p.stderr
