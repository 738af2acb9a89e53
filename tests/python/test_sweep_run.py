"""moelab sweep run (the local executor) and moelab status: every job runs once and is
recorded; a re-run does nothing; kill -9 mid-sweep then a re-run ends with the results of
an uninterrupted run without redoing finished jobs; a failure stops only its dependents
and a re-run retries only them; one executor per results directory."""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from helpers import mixtral_with_tokenizer
from sweep_fixtures import eval_metrics, plan, records, status, write_sweep


@pytest.fixture(scope="module")
def model(fixtures, tmp_path_factory):
    return mixtral_with_tokenizer(fixtures, tmp_path_factory.mktemp("sweep") / "mixtral")[0]


@pytest.fixture(scope="module")
def uninterrupted(model, moelab_bin, tmp_path_factory):
    """The reference: the sweep run start to end in one go."""
    d = tmp_path_factory.mktemp("reference")
    spec = write_sweep(d, model)
    subprocess.run([moelab_bin, "sweep", "run", spec, "--results", d / "results"], check=True, capture_output=True,
                   timeout=600)
    return spec, d / "results"


def test_every_job_runs_once_is_recorded_and_a_rerun_does_nothing(uninterrupted, moelab):
    spec, results = uninterrupted
    jobs = plan(results)["jobs"]
    kinds = [j["kind"] for j in jobs]
    # 2 criteria x 2 ratios x 2 procedures = 8 prune jobs; one calibration (EAN; RWN needs
    # none), one scoring job, 8 + 1 evaluations.
    assert (kinds.count("calibrate"), kinds.count("score"), kinds.count("prune"), kinds.count("eval")) == (1, 1, 8, 9)
    recs = records(results)
    assert set(recs) == {j["id"] for j in jobs}
    assert all(r["state"] == "done" and r["attempt"] == 1 and r["exit_code"] == 0 for r in recs.values())
    for j in jobs:
        assert (results / j["output"]).exists(), j
    # The spec is copied in and the plan keeps {out}, so the directory stands alone.
    assert (results / "sweep.yaml").read_text() == spec.read_text()
    assert all("{out}" in " ".join(j["args"]) for j in jobs)
    # Multi-rank jobs ran under mpirun with their ranks.
    calib = next(j for j in jobs if j["kind"] == "calibrate")
    assert "mpirun" in (results / "logs" / f"{calib['id']}.log").read_text().splitlines()[1]
    # Eval metrics: every final model has a perplexity; the unpruned one is evaluated once.
    metrics = eval_metrics(results)
    assert len(metrics) == 9 and all(m[0][0] == "wiki" and m[0][1]["perplexity"] > 1 for m in metrics.values())
    base = [j for j in jobs if j["kind"] == "eval" and j["tags"]["criterion"] == "none"]
    assert len(base) == 1
    before = {k: v["started"] for k, v in recs.items()}
    out = moelab("sweep", "run", spec, "--results", results).stderr
    assert "0 jobs run now, 19 done earlier" in out
    assert {k: v["started"] for k, v in records(results).items()} == before
    st = status(moelab, results)
    assert all(s["done"] == s["done"] + s["running"] + s["queued"] + s["failed"] + s["pending"] for s in st["stages"])
    assert sum(s["done"] for s in st["stages"]) == 19


def test_kill_9_mid_sweep_then_rerun_equals_an_uninterrupted_run(uninterrupted, model, moelab, moelab_bin, tmp_path):
    _, reference = uninterrupted
    spec = write_sweep(tmp_path, model)
    results = tmp_path / "results"
    proc = subprocess.Popen([moelab_bin, "sweep", "run", spec, "--results", results], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and sum(r["state"] == "done" for r in records(results).values()) < 5:
        time.sleep(0.05)
    # While it runs, a second executor on the same directory is refused.
    second = moelab("sweep", "run", spec, "--results", results, check=False)
    assert second.returncode != 0 and "another moelab process is running this sweep" in second.stderr
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1)  # the running job got SIGTERM when its executor died
    finished = {k: v for k, v in records(results).items() if v["state"] == "done"}
    assert 5 <= len(finished) < 19
    running = [p.stem for p in (results / "jobs").glob("*.running")]
    st = status(moelab, results)
    assert st["stages"][0]["stage"] == "calibrate"
    assert sum(s["done"] for s in st["stages"]) == len(finished)
    assert all(j["state"] != "running" for j in st["jobs"])  # the executor is gone: nothing runs
    for job_id in running:  # a stale marker reads as interrupted, i.e. still to do
        assert next(j for j in st["jobs"] if j["id"] == job_id)["detail"] == "interrupted"
    out = moelab("sweep", "run", spec, "--results", results).stderr
    assert f"{19 - len(finished)} jobs run now, {len(finished)} done earlier" in out
    after = records(results)
    for job_id, rec in finished.items():  # finished jobs were not run again
        assert after[job_id] == rec
    assert all(r["state"] == "done" for r in after.values()) and len(after) == 19
    assert eval_metrics(results) == eval_metrics(reference)
    assert not list(results.rglob("*.tmp-*"))  # no half-written output left


def test_a_rerun_removes_the_half_written_job_files_of_a_killed_executor(uninterrupted, moelab, tmp_path):
    """kill -9 between writing a job's record or running marker under its temporary name and
    renaming it leaves "<id>.running.tmp-<pid>" behind (seen once in CI): the next executor,
    holding the lock, removes those of processes that no longer run, and no other file."""
    spec, reference = uninterrupted
    results = tmp_path / "results"
    shutil.copytree(reference, results)
    job = next(iter(records(results)))
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = [results / "jobs" / f"{job}.running.tmp-{dead.pid}", results / "jobs" / f"{job}.json.tmp-{dead.pid}"]
    alive = results / "jobs" / f"{job}.running.tmp-{os.getpid()}"  # a live writer's: kept
    for p in stale + [alive]:
        p.write_text("{")
    out = moelab("sweep", "run", spec, "--results", results).stderr
    assert "0 jobs run now, 19 done earlier" in out and "removed 2 half-written job file(s)" in out
    assert not any(p.exists() for p in stale) and alive.exists()
    assert records(results) == records(reference)


def test_repeated_kill_9_at_random_points_loses_and_duplicates_nothing(uninterrupted, model, moelab, moelab_bin,
                                                                       tmp_path):
    import random
    _, reference = uninterrupted
    spec = write_sweep(tmp_path, model)
    results = tmp_path / "results"
    rng = random.Random(7)
    kills = 0
    for target in sorted(rng.sample(range(1, 18), 3)):
        proc = subprocess.Popen([moelab_bin, "sweep", "run", spec, "--results", results], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and \
                sum(r["state"] == "done" for r in records(results).values()) < target:
            time.sleep(0.01)
        time.sleep(rng.random() * 0.5)  # somewhere inside the next job
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 2
    moelab("sweep", "run", spec, "--results", results)
    recs = records(results)
    assert len(recs) == 19 and all(r["state"] == "done" for r in recs.values())
    for job in plan(results)["jobs"]:
        starts = (results / "logs" / f"{job['id']}.log").read_text().count("== moelab sweep:")
        assert 1 <= starts <= 1 + kills, (job["label"], starts)
        if job["kind"] == "eval":  # one record per domain: an interrupted eval left none behind
            assert len((results / job["output"]).read_text().splitlines()) == 1
    assert eval_metrics(results) == eval_metrics(reference)
    assert not list(results.rglob("*.tmp-*"))


def test_a_failed_job_stops_only_its_dependents_and_a_rerun_retries_them(model, moelab, tmp_path):
    # A task file that cannot be read fails every evaluation (at run time: the spec only
    # checks that the file exists); pruning is unaffected.
    task = tmp_path / "task.jsonl"
    task.write_text("not json\n")
    spec = write_sweep(tmp_path, model, criteria=["Max-RWN"], ratios=[0.5], procedures=["one-shot"],
                       eval={"tasks": [str(task)], "max_length": 16})
    results = tmp_path / "results"
    r = moelab("sweep", "run", spec, "--results", results, check=False)
    assert r.returncode != 0 and "2 job(s) failed" in r.stderr
    recs = records(results)
    by_kind = {}
    for j in plan(results)["jobs"]:
        by_kind.setdefault(j["kind"], []).append(recs[j["id"]])
    assert all(x["state"] == "done" for x in by_kind["score"] + by_kind["prune"])
    assert all(x["state"] == "failed" and x["exit_code"] != 0 for x in by_kind["eval"])
    assert all("task.jsonl" in (results / x["log"]).read_text() for x in by_kind["eval"])
    st = status(moelab, results)
    assert next(s for s in st["stages"] if s["stage"] == "eval")["failed"] == 2
    text = moelab("status", results).stdout
    assert "failed" in text and "logs/" in text
    # Fix the task file: the same jobs (same ids) run again, and only they.
    task.write_text(json.dumps({"query": "1 + 1 =", "choices": [" 2", " 3"], "gold": 0}) + "\n")
    moelab("sweep", "run", spec, "--results", results)
    again = records(results)
    assert all(again[x["id"]]["attempt"] == 2 and again[x["id"]]["state"] == "done" for x in by_kind["eval"])
    assert all(again[x["id"]] == x for x in by_kind["prune"] + by_kind["score"])


def test_a_results_directory_holds_one_sweep(model, moelab, tmp_path):
    spec = write_sweep(tmp_path, model, criteria=["Max-RWN"], ratios=[0.5], procedures=["one-shot"], eval={})
    moelab("sweep", "run", spec, "--results", tmp_path / "r")
    other = write_sweep(tmp_path / "o", model, name="other", criteria=["Max-RWN"], ratios=[0.5],
                        procedures=["one-shot"], eval={})
    r = moelab("sweep", "run", other, "--results", tmp_path / "r", check=False)
    assert r.returncode == 2 and 'holds the results of sweep "s"' in r.stderr
    r = moelab("status", tmp_path, check=False)
    assert r.returncode == 2 and "not a sweep results directory" in r.stderr


@pytest.mark.parametrize("command", [["sweep", "run"], ["submit"], ["submit", "--dry-run"]])
@pytest.mark.parametrize("over,key", [
    ({"criteria": ["EAN", "NoSuchCriterion"]}, "criteria[1]"),
    ({"ratios": [0.25, 1.5]}, "ratios[1]"),
    ({"model": "/no/such/model"}, "model"),
])
def test_a_bad_spec_fails_before_any_job_starts(model, moelab, tmp_path, command, over, key):
    spec = write_sweep(tmp_path, model, **over)
    r = moelab(*command, spec, "--results", tmp_path / "r", check=False)
    assert r.returncode == 2 and r.stderr.startswith(f"error: {spec}: {key}:") and r.stderr.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_a_results_path_that_a_batch_script_would_have_to_quote_is_refused(model, moelab, tmp_path):
    spec = write_sweep(tmp_path, model, criteria=["Max-RWN"], ratios=[0.5], procedures=["one-shot"], eval={})
    hostile = tmp_path / "r$(touch pwned)"
    r = moelab("submit", spec, "--results", hostile, "--dry-run", check=False)
    assert r.returncode == 2 and "a batch script would need to quote" in r.stderr and r.stderr.count("\n") == 1
    assert not list(tmp_path.rglob("*.sbatch")) and not (tmp_path / "pwned").exists()


def test_a_layerwise_calibration_set_gives_the_whole_model_statistics(model, moelab, tmp_path):
    import h5py
    import numpy as np
    common = dict(criteria=["EAN", "REAP"], ratios=[0.5], procedures=["one-shot"], eval={})
    cal = {"name": "c", "data": ["cal.json"], "seq_len": 16, "num_samples": 0}
    whole = write_sweep(tmp_path / "w", model, calibration=[cal], **common)
    layers = write_sweep(tmp_path / "l", model, calibration=[{**cal, "layerwise": True, "memory_budget": "64M"}],
                         **common)
    moelab("sweep", "run", whole, "--results", tmp_path / "rw")
    moelab("sweep", "run", layers, "--results", tmp_path / "rl")
    jw = next(j for j in plan(tmp_path / "rw")["jobs"] if j["kind"] == "calibrate")
    jl = next(j for j in plan(tmp_path / "rl")["jobs"] if j["kind"] == "calibrate")
    assert "--layerwise" in jl["args"] and "--layerwise" not in jw["args"]
    assert "layer by layer: " in (tmp_path / "rl" / "logs" / f"{jl['id']}.log").read_text()
    with h5py.File(tmp_path / "rw" / jw["output"]) as a, h5py.File(tmp_path / "rl" / jl["output"]) as b:
        names = []
        a.visit(names.append)
        assert names and all(np.array_equal(a[n][()], b[n][()]) for n in names if isinstance(a[n], h5py.Dataset))
