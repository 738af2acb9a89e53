"""Faults: a full disk (a file-size limit, RLIMIT_FSIZE with SIGXFSZ ignored, so that a
write past it fails with EFBIG as on a full disk) under calibrate, score, prune and a
sweep leaves nothing under a final name and a later run redoes the work; a rank killed
with SIGKILL mid-calibration takes every rank down within a bound and leaves no
statistics file; results folders that are symbolic links, and job ids or outputs in a
tampered plan.json that point outside the results directory, are refused."""
import json
import os
import signal
import subprocess
import time

import h5py
import pytest

from bf16_checkpoint import write_bf16_mixtral
from helpers import SEQ_LEN, leftovers, mixtral_with_tokenizer, run_limited
from sweep_fixtures import eval_metrics, plan, records, write_sweep


def cyclic_token_file(path, n=8):
    """n windows of one fixed cycle of ids (sweep_fixtures' pattern), not helpers.token_file's random ones."""
    path.write_text(json.dumps({"input_ids": [[1 + (i * 7 + j) % 390 for j in range(SEQ_LEN)] for i in range(n)]}))
    return path


def calibrate_args(model, data, out):
    return ["calibrate", model, "--data", data, "--seq-len", SEQ_LEN, "--num-samples", 0,
            "--collect", "usage,act_norms,token_ids", "--out", out]


@pytest.fixture(scope="module")
def model(fixtures, tmp_path_factory):
    return mixtral_with_tokenizer(fixtures, tmp_path_factory.mktemp("faults") / "mixtral")[0]


def test_disk_full_during_calibrate_leaves_no_statistics_file(model, moelab, moelab_bin, tmp_path):
    data = cyclic_token_file(tmp_path / "cal.json")
    moelab(*calibrate_args(model, data, tmp_path / "full.h5"))
    size = (tmp_path / "full.h5").stat().st_size
    out = tmp_path / "out" / "stats.h5"
    out.parent.mkdir()
    r = run_limited(moelab_bin, size // 2, *calibrate_args(model, data, out))
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].startswith("error:"), r.stderr
    assert not out.exists() and leftovers(out.parent) == []


def test_disk_full_during_score_and_prune_leaves_no_output(model, moelab, moelab_bin, tmp_path):
    data = cyclic_token_file(tmp_path / "cal.json")
    moelab(*calibrate_args(model, data, tmp_path / "stats.h5"))
    moelab("score", "--stats", tmp_path / "stats.h5", "--model", model, "--criteria", "EUF,EAN",
           "--out", tmp_path / "full.json")
    size = (tmp_path / "full.json").stat().st_size
    r = run_limited(moelab_bin, size // 2, "score", "--stats", tmp_path / "stats.h5", "--model", model,
                    "--criteria", "EUF,EAN", "--out", tmp_path / "scores.json")
    assert r.returncode != 0 and "error:" in r.stderr
    assert not (tmp_path / "scores.json").exists()

    moelab("prune", model, "--out", tmp_path / "full", "--drop", "0:1")
    biggest = max(p.stat().st_size for p in (tmp_path / "full").iterdir())
    r = run_limited(moelab_bin, biggest // 2, "prune", model, "--out", tmp_path / "pruned", "--drop", "0:1")
    assert r.returncode != 0 and "error:" in r.stderr
    assert not (tmp_path / "pruned").exists()
    assert leftovers(tmp_path) == []


def test_disk_full_during_streamed_prune_of_a_sharded_checkpoint_leaves_no_output(moelab, moelab_bin, tmp_path):
    """Surgery on a sharded bf16 checkpoint writes shard by shard into a temporary
    directory; a failing write leaves neither the output nor the temporary."""
    src = tmp_path / "bf16"
    write_bf16_mixtral(src, layers=4, experts=8, hidden=128, ffn=256, vocab=512, layers_per_shard=1)
    moelab("prune", src, "--out", tmp_path / "full", "--drop", "0:1", "--drop", "3:2")
    shards = sorted((tmp_path / "full").glob("model-*.safetensors"))
    assert len(shards) == 4 and (tmp_path / "full" / "model.safetensors.index.json").exists()
    r = run_limited(moelab_bin, max(p.stat().st_size for p in shards) // 2, "prune", src, "--out",
                    tmp_path / "pruned", "--drop", "0:1", "--drop", "3:2")
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].startswith("error:"), r.stderr
    assert not (tmp_path / "pruned").exists()
    assert leftovers(tmp_path) == []


def test_disk_full_mid_sweep_then_rerun_redoes_the_failed_jobs(model, moelab, moelab_bin, tmp_path):
    kw = dict(criteria=["EAN"], ratios=[0.5], procedures=["one-shot"])
    reference = tmp_path / "reference"
    moelab("sweep", "run", write_sweep(tmp_path / "a", model, **kw), "--results", reference)
    limit = max(p.stat().st_size for p in (reference / "prune").rglob("*") if p.is_file()) // 2
    spec = write_sweep(tmp_path / "b", model, **kw)
    results = tmp_path / "results"
    r = run_limited(moelab_bin, limit, "sweep", "run", spec, "--results", results)
    assert r.returncode != 0
    recs = records(results)
    assert any(v["state"] != "done" for v in recs.values())
    for job in plan(results)["jobs"]:  # what is recorded done is complete; the rest left nothing
        out = results / job["output"]
        if recs.get(job["id"], {}).get("state") == "done":
            assert out.exists()
        elif job["kind"] != "eval":
            assert not out.exists(), job["label"]
    assert leftovers(results) == []
    moelab("sweep", "run", spec, "--results", results)
    assert all(v["state"] == "done" for v in records(results).values())
    assert eval_metrics(results) == eval_metrics(reference)


def descendants(pid):
    """Every process below pid (from /proc), so that the test can find the ranks."""
    children = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                ppid = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(p))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def rank_processes(launcher_pid):
    ranks = {}
    for p in descendants(launcher_pid):
        try:
            env = open(f"/proc/{p}/environ", "rb").read().split(b"\0")
            cmd = open(f"/proc/{p}/cmdline", "rb").read()
        except OSError:
            continue
        rank = [e for e in env if e.startswith(b"OMPI_COMM_WORLD_RANK=")]
        if rank and b"calibrate" in cmd:
            ranks[int(rank[0].split(b"=")[1])] = p
    return ranks


@pytest.mark.parametrize("victim", [0, 1])
def test_a_rank_killed_mid_calibration_stops_every_rank_and_leaves_no_statistics(victim, model, moelab_bin, tmp_path):
    data = cyclic_token_file(tmp_path / "cal.json", n=40000)  # long enough to be killed mid-pass (4000 took 2.9 s idle)
    out = tmp_path / "stats.h5"
    proc = subprocess.Popen([moelab_bin, "--ranks", "2", *map(str, calibrate_args(model, data, out))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "MOELAB_COMM_TIMEOUT_S": "10"})
    try:
        deadline = time.time() + 120
        ranks = {}
        while time.time() < deadline and len(ranks) < 2 and proc.poll() is None:
            ranks = rank_processes(proc.pid)
            time.sleep(0.1)
        assert len(ranks) == 2, "the two ranks never started"
        time.sleep(3)  # past start-up, inside the calibration pass
        assert proc.poll() is None, "calibration finished before the kill: make the data longer"
        os.kill(ranks[victim], signal.SIGKILL)
        killed_at = time.time()
        proc.wait(timeout=90)
        took = time.time() - killed_at
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    print(f"rank {victim} killed: every rank gone {took:.1f} s later")
    assert took < 60, f"ranks still running {took:.0f} s after one was killed"
    survivors = [p for p in ranks.values() if os.path.exists(f"/proc/{p}") and
                 open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]
    assert survivors == []
    assert not out.exists() and leftovers(tmp_path) == []


def small_sweep(tmp_path, model, moelab):
    spec = write_sweep(tmp_path, model, criteria=["Max-RWN"], ratios=[0.5], procedures=["one-shot"], eval={})
    results = tmp_path / "r"
    moelab("sweep", "run", spec, "--results", results)
    return spec, results


@pytest.mark.parametrize("folder", ["prune", "jobs", "logs"])
def test_a_results_folder_that_is_a_symlink_out_of_the_directory_is_refused(folder, model, moelab, tmp_path):
    spec, results = small_sweep(tmp_path, model, moelab)
    outside = tmp_path / "outside"
    (results / folder).rename(outside)
    (results / folder).symlink_to(outside)
    before = sorted(p.name for p in outside.iterdir())
    for args in (["sweep", "run", spec, "--results", results], ["status", results]):
        r = moelab(*args, check=False)
        assert r.returncode == 2 and f'"{folder}" is a symbolic link' in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1
    assert sorted(p.name for p in outside.iterdir()) == before  # nothing removed or written there


@pytest.mark.parametrize("field,value", [("id", "../../victim"), ("output", "../victim"),
                                         ("output", "/tmp/victim"), ("output", "prune/../../victim")])
def test_a_plan_whose_job_paths_leave_the_results_directory_is_refused(field, value, model, moelab, tmp_path):
    spec, results = small_sweep(tmp_path, model, moelab)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("x")
    p = plan(results)
    p["jobs"][-1][field] = value
    (results / "plan.json").write_text(json.dumps(p))
    r = moelab("status", results, check=False)
    assert r.returncode == 2 and "malformed job" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert (victim / "keep").exists()
