"""`moelab lm-eval` and sweeps' `eval.lm_eval`: lm-evaluation-harness tasks run through
moelab's backend land as result records (kind lm_eval) with lm-eval's own metrics, equal to
lm-eval's Hugging Face backend on the same items, and in the sweep report's tables. Tasks
are lm-eval YAMLs over local JSON files (nothing is downloaded)."""
import importlib.metadata
import json
import math
import os
import pathlib
import subprocess

import pytest
import yaml

from helpers import DEFAULT_MODEL as MODEL, REPO, write_tasks

lm_eval = pytest.importorskip("lm_eval")

LIMIT = 16


def records(path):
    return [json.loads(line) for line in pathlib.Path(path).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    return write_tasks(tmp_path_factory.mktemp("tasks"))


@pytest.fixture(scope="module")
def hf_results(tasks):
    """lm-eval's own HF backend (fp32) on the same tasks and items: the reference."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM  # noqa: F401  (registers --model hf)
    from lm_eval.tasks import TaskManager
    out = simple_evaluate(model="hf", model_args=f"pretrained={MODEL},dtype=float32", device="cpu",
                          tasks=["moelab_test_mc", "moelab_test_ppl"], task_manager=TaskManager(include_path=str(tasks)),
                          num_fewshot=0, batch_size=4, limit=LIMIT)
    return out["results"]


def test_lm_eval_command_writes_lm_evals_metrics_as_records_equal_to_the_hf_backend(moelab, tasks, hf_results, tmp_path):
    res = tmp_path / "results.jsonl"
    keep = tmp_path / "lm_eval_out"
    moelab("lm-eval", MODEL, "--include-path", tasks, "--task", "moelab_test_mc,moelab_test_ppl", "--num-fewshot", "0",
           "--limit", str(LIMIT), "--batch-size", "4", "--output-path", keep, "--results", res)
    recs = {r["task"]: r for r in records(res)}
    assert set(recs) == {"moelab_test_mc", "moelab_test_ppl"}
    mc, ppl = recs["moelab_test_mc"], recs["moelab_test_ppl"]
    assert mc["kind"] == "lm_eval" and mc["n_items"] == LIMIT and mc["details"]["n_samples_original"] == 40
    assert mc["details"]["primary_metric"] == "acc" and mc["details"]["higher_is_better"]["acc"] is True
    assert mc["settings"]["num_fewshot"] == 0 and mc["settings"]["limit"] == LIMIT
    assert mc["settings"]["lm_eval_version"] == importlib.metadata.version("lm_eval")
    # The same numbers as lm-eval's own results file (",none" dropped) ...
    own = json.loads(next(keep.rglob("results_*.json")).read_text())["results"]
    assert mc["metrics"]["acc"] == own["moelab_test_mc"]["acc,none"]
    assert mc["metrics"]["acc_norm_stderr"] == own["moelab_test_mc"]["acc_norm_stderr,none"]
    # ... and as lm-eval's HF backend on the same items.
    assert mc["metrics"]["acc"] == hf_results["moelab_test_mc"]["acc,none"]
    assert mc["metrics"]["acc_norm"] == hf_results["moelab_test_mc"]["acc_norm,none"]
    assert 0.5 < mc["metrics"]["acc"] <= 1.0
    assert ppl["details"]["primary_metric"] == "word_perplexity"
    assert ppl["details"]["higher_is_better"]["word_perplexity"] is False
    for m in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert math.isclose(ppl["metrics"][m], hf_results["moelab_test_ppl"][m + ",none"], rel_tol=1e-4), m
    assert ppl["metrics"]["word_perplexity_stderr"] is None  # lm-eval's "N/A"


def test_a_task_lm_eval_cannot_build_or_a_bad_model_is_one_line_and_nothing_is_written(moelab_bin, tmp_path):
    res = tmp_path / "r.jsonl"
    env = dict(os.environ, PMIX_MCA_psec="native")
    p = subprocess.run([moelab_bin, "lm-eval", MODEL, "--task", "no_such_task", "--results", res], capture_output=True,
                       text=True, env=env, timeout=300)
    assert p.returncode != 0
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: lm-eval: failed") and "no_such_task" in last, last
    assert not res.exists()
    p = subprocess.run([moelab_bin, "lm-eval", tmp_path, "--task", "x", "--results", res], capture_output=True,
                       text=True, env=env, timeout=60)
    assert p.returncode == 2 and p.stderr.strip() == f"error: {tmp_path}: not a model directory (no config.json)"
    assert not res.exists()


def write_sweep(tmp_path, task_dir, **eval_over):
    lm = {"tasks": ["moelab_test_mc"], "include_path": str(task_dir), "limit": LIMIT, "batch_size": 4}
    lm.update(eval_over)
    spec = {"name": "lm", "model": str(MODEL), "criteria": ["Random"], "ratios": [0.5], "procedures": ["one-shot"],
            "eval": {"lm_eval": lm}, "resources": {"eval": {"ranks": 2, "mem": "4G", "time": "00:20:00"}}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_sweep_runs_eval_lm_eval_per_model_and_the_report_shows_its_metric(moelab, tasks, hf_results, tmp_path):
    spec = write_sweep(tmp_path, tasks)
    results = tmp_path / "results"
    moelab("sweep", "run", spec, "--results", results)
    plan = json.loads((results / "plan.json").read_text())["jobs"]
    lm_jobs = [j for j in plan if j["kind"] == "eval"]
    assert len(lm_jobs) == 2 and all(j["args"][0] == "lm-eval" for j in lm_jobs)  # unpruned and pruned
    by_crit = {}
    for j in lm_jobs:
        (rec,) = records(results / j["output"])
        assert rec["kind"] == "lm_eval" and rec["world_size"] == 2 and rec["n_items"] == LIMIT
        by_crit[j["tags"]["criterion"]] = rec["metrics"]["acc"]
        # The job is not wrapped in mpirun: its backend starts the ranks.
        cmdline = next(l for l in (results / "logs" / f"{j['id']}.log").read_text().splitlines() if l.startswith("$"))
        assert "mpirun" not in cmdline and "--ranks 2" in cmdline
    assert by_crit["none"] == hf_results["moelab_test_mc"]["acc,none"]  # the unpruned model: HF's number
    moelab("report", results)
    md = (results / "report" / "report.md").read_text()
    assert "moelab_test_mc acc" in md
    assert f"{100 * by_crit['none']:.1f}" in md and f"{100 * by_crit['Min-Random']:.1f}" in md


@pytest.mark.parametrize("over,field", [({"limit": 0}, "eval.lm_eval.limit"), ({"tasks": []}, "eval.lm_eval.tasks"),
                                        ({"num_shots": 2}, "eval.lm_eval.num_shots"),
                                        ({"include_path": "nowhere"}, "eval.lm_eval.include_path")])
def test_a_bad_eval_lm_eval_section_is_one_line_naming_the_field(moelab_bin, tasks, tmp_path, over, field):
    spec = write_sweep(tmp_path, tasks, **over)
    p = subprocess.run([moelab_bin, "sweep", "plan", spec], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stdout
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and str(spec) in lines[0], lines


def test_the_shipped_lm_eval_task_as_documented_equals_moelabs_native_task(moelab, tmp_path):
    """`moelab lm-eval --help`'s first example, from the repository root (the shipped YAMLs read
    their items relative to it): lm-eval's scoring of configs/tasks/debian_moe_en.jsonl through
    the backend gives the native `moelab eval --task` accuracy on the same 40 items."""
    lm = tmp_path / "lm.jsonl"
    moelab("lm-eval", "models/debian-moe", "--include-path", "configs/tasks/lm_eval", "--task", "debian_moe_en",
           "--results", lm, cwd=REPO)
    native = tmp_path / "native.jsonl"
    moelab("eval", MODEL, "--task", REPO / "configs" / "tasks" / "debian_moe_en.jsonl", "--results", native)
    (l,), (n,) = records(lm), records(native)
    assert l["n_items"] == n["n_items"] == 40
    assert l["metrics"]["acc"] == n["metrics"]["acc"] and l["metrics"]["acc_norm"] == n["metrics"]["acc_norm"]
    assert math.isclose(l["metrics"]["acc_stderr"], n["metrics"]["acc_stderr"], rel_tol=1e-9)
