"""moelab submit on a real single-node Slurm (slurmctld + slurmd + munge from Debian,
started by slurm/start_local_slurm.sh): a submitted sweep ends with the results the local
executor gives; an scancel'ed task and `submit --resume` complete the sweep; a request Slurm
would reject fails before anything is queued; --dry-run writes scripts only; USR1 near the
time limit makes fine-tuning and calibration checkpoint, requeue and resume."""
import json
import math
import os
import random
import shutil
import subprocess
import time

import pytest

from helpers import REPO, mixtral_with_tokenizer
from sweep_fixtures import eval_metrics, plan, records, status, write_sweep

pytestmark = pytest.mark.skipif(shutil.which("slurmctld") is None and not os.environ.get("MOELAB_REQUIRE_SLURM"),
                                reason="slurm-wlm is not installed (scripts/setup.sh installs it)")


def free_port_pair():
    """Two consecutive free TCP ports below Linux's ephemeral range (32768-60999), so that no
    outgoing connection takes them between this check and the daemons' start."""
    import socket
    for _ in range(200):
        port = random.randint(12000, 30000)
        try:
            for p in (port, port + 1):
                with socket.socket() as s:
                    s.bind(("", p))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair for the local Slurm")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A private Slurm: its own config, state and ports; stopped after the module."""
    state = tmp_path_factory.mktemp("slurm")
    port = free_port_pair()
    env = dict(os.environ, MOELAB_SLURMCTLD_PORT=str(port), MOELAB_SLURMD_PORT=str(port + 1))
    subprocess.run([REPO / "slurm" / "start_local_slurm.sh", state], check=True, env=env, timeout=120)
    os.environ["SLURM_CONF"] = str(state / "slurm.conf")
    yield state
    subprocess.run([REPO / "slurm" / "stop_local_slurm.sh", state], timeout=60)
    os.environ.pop("SLURM_CONF", None)


@pytest.fixture(scope="module")
def model(fixtures, tmp_path_factory):
    return mixtral_with_tokenizer(fixtures, tmp_path_factory.mktemp("slurm_model") / "mixtral")[0]


def queue():
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T"], capture_output=True, text=True, check=True).stdout
    return dict(line.split("|") for line in out.split())


def wait_for_empty_queue(timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not queue():
            return
        time.sleep(0.5)
    raise AssertionError(f"Slurm queue not empty after {timeout} s: {queue()}")


def usr1_once_checkpointed(task, checkpoint):
    """Sends USR1 to the batch script of `task` (what --signal=B:USR1@N does near the time
    limit) once it runs and `checkpoint` exists, then waits for the requeue."""
    deadline = time.time() + 180
    while time.time() < deadline and not (queue().get(task) == "RUNNING" and checkpoint.exists()):
        time.sleep(0.02)
    assert checkpoint.exists(), f"task {task} never reached its first checkpoint"
    subprocess.run(["scancel", "--signal=USR1", "--batch", task], check=True)
    # Slurm holds a requeued task back for a while (BeginTime); let it start sooner. Not at
    # once: slurmd refuses a launch whose credential dates from the same second as the
    # revocation of the previous attempt's ("Job credential revoked"), and the task is lost.
    deadline = time.time() + 60
    while time.time() < deadline and queue().get(task) != "PENDING":
        time.sleep(0.1)
    time.sleep(3)
    subprocess.run(["scontrol", "update", f"JobId={task}", "StartTime=now"], capture_output=True)


def test_a_submitted_sweep_equals_the_local_run(slurm, model, moelab, tmp_path):
    spec = write_sweep(tmp_path, model, slurm={"throttle": 2})
    moelab("sweep", "run", spec, "--results", tmp_path / "local")
    r = moelab("submit", spec, "--results", tmp_path / "slurm")
    assert "submitted prune: array job" in r.stderr and "at most 2 at once" in r.stderr
    # Stages are chained: score after calibrate, prune after score, eval after prune.
    subs = [json.loads(l) for l in (tmp_path / "slurm" / "slurm" / "submissions.jsonl").read_text().splitlines()]
    assert [s["stage"] for s in subs] == ["calibrate", "score", "prune", "eval"]
    assert subs[1]["dependency"] == "afterok:" + subs[0]["array_job"]
    assert subs[3]["dependency"] == "afterok:" + subs[2]["array_job"]
    wait_for_empty_queue()
    recs = records(tmp_path / "slurm")
    assert len(recs) == 19 and all(r["state"] == "done" and r["executor"] == "slurm" for r in recs.values())
    assert all(r["slurm_job"].split("_")[0] in {s["array_job"] for s in subs} for r in recs.values())
    # Multi-rank jobs ran as such inside their allocations.
    calib = next(j for j in plan(tmp_path / "slurm")["jobs"] if j["kind"] == "calibrate")
    log = (tmp_path / "slurm" / "logs" / f"{calib['id']}.log").read_text()
    assert "mpirun" in log and "-np 2" in log and "2 rank(s)" in log
    assert eval_metrics(tmp_path / "slurm") == eval_metrics(tmp_path / "local")
    st = status(moelab, tmp_path / "slurm")
    assert st["slurm_read"] and sum(s["done"] for s in st["stages"]) == 19


def test_scancel_of_a_running_task_then_submit_resume_completes_the_sweep(slurm, model, moelab, tmp_path):
    # Iterative pruning on a larger calibration set runs long enough to be caught running.
    spec = write_sweep(tmp_path, model, procedures=["iterative"], criteria=["EAN", "REAP"],
                       calibration=[{"name": "c", "data": ["cal.json"], "seq_len": 16, "num_samples": 0}],
                       slurm={"throttle": 1})
    cal = json.loads((tmp_path / "cal.json").read_text())["input_ids"]
    (tmp_path / "cal.json").write_text(json.dumps({"input_ids": cal * 40}))
    moelab("submit", spec, "--results", tmp_path / "r")
    subs = [json.loads(l) for l in (tmp_path / "r" / "slurm" / "submissions.jsonl").read_text().splitlines()]
    prune = next(s for s in subs if s["stage"] == "prune")
    deadline, victim = time.time() + 120, None
    while time.time() < deadline and victim is None:
        victim = next((t for t, s in queue().items() if t.startswith(prune["array_job"] + "_") and s == "RUNNING"),
                      None)
        time.sleep(0.05)
    assert victim, "no prune task was seen running"
    subprocess.run(["scancel", victim], check=True)
    time.sleep(1)
    victim_job = prune["ids"][int(victim.split("_")[1])]
    # While other tasks are still queued, a plain submit refuses; --resume submits what is missing.
    if any(s in ("PENDING", "RUNNING") for s in queue().values()):
        r = moelab("submit", spec, "--results", tmp_path / "r", check=False)
        assert r.returncode == 2 and "--resume" in r.stderr
    r = moelab("submit", spec, "--results", tmp_path / "r", "--resume")
    wait_for_empty_queue()
    recs = records(tmp_path / "r")
    assert len(recs) == len(plan(tmp_path / "r")["jobs"]) and all(x["state"] == "done" for x in recs.values())
    assert recs[victim_job]["slurm_job"] != victim  # it ran again, in the resumed submission
    # Done jobs were never submitted twice: every job's last attempt is its first done one.
    resumed = [json.loads(l) for l in (tmp_path / "r" / "slurm" / "submissions.jsonl").read_text().splitlines()]
    resubmitted = {i for s in resumed[len(subs):] for i in s["ids"]}
    assert victim_job in resubmitted
    assert not resubmitted & {i for i, x in recs.items() if x["slurm_job"].split("_")[0] in
                              {s["array_job"] for s in subs}}
    # And the numbers are those of a local run.
    moelab("sweep", "run", spec, "--results", tmp_path / "local")
    assert eval_metrics(tmp_path / "r") == eval_metrics(tmp_path / "local")


@pytest.mark.parametrize("kind,resources,why", [
    ("prune", {"ranks": 64, "mem": "1G", "time": "00:10:00"}, "resources.prune"),
    ("eval", {"ranks": 1, "mem": "900G", "time": "00:10:00"}, "resources.eval"),
])
def test_a_request_slurm_would_reject_fails_before_any_job_is_queued(slurm, model, moelab, tmp_path, kind,
                                                                     resources, why):
    spec = write_sweep(tmp_path, model)
    text = spec.read_text()
    import yaml
    s = yaml.safe_load(text)
    s["resources"][kind] = resources
    spec.write_text(yaml.safe_dump(s))
    before = queue()
    r = moelab("submit", spec, "--results", tmp_path / "r", check=False)
    assert r.returncode == 2
    assert r.stderr.startswith(f"error: {spec}: {why}: Slurm rejects the request") and r.stderr.count("\n") == 1
    assert queue() == before
    assert not (tmp_path / "r" / "slurm" / "submissions.jsonl").exists()
    assert not list((tmp_path / "r" / "slurm").glob("submit-*"))


def test_dry_run_writes_the_scripts_and_submits_nothing(slurm, model, moelab, tmp_path):
    spec = write_sweep(tmp_path, model, slurm={"throttle": 3, "partition": "debug", "sbatch_args": ["--nice=10"]})
    before = queue()
    moelab("submit", spec, "--results", tmp_path / "r", "--dry-run")
    assert queue() == before
    d = tmp_path / "r" / "slurm" / "submit-001"
    prune = (d / "prune.sbatch").read_text()
    for line in ["#SBATCH --array=0-7%3", "#SBATCH --ntasks=1", "#SBATCH --mem=1G", "#SBATCH --time=00:10:00",
                 "#SBATCH --requeue", "#SBATCH --signal=B:USR1@120", "#SBATCH --partition=debug", "#SBATCH --nice=10"]:
        assert line in prune.splitlines(), line
    assert "#SBATCH --ntasks=2" in (d / "eval.sbatch").read_text().splitlines()
    jobs = [json.loads(l) for l in (d / "prune.jobs.jsonl").read_text().splitlines()]
    assert [j["id"] for j in jobs] == [j["id"] for j in plan(tmp_path / "r")["jobs"] if j["kind"] == "prune"]
    submit = (d / "submit.sh").read_text()
    assert "--dependency=afterok:${score_job}" in submit and "--dependency=afterok:${prune_job}" in submit
    # A template with a placeholder moelab does not know is a one-line error.
    bad = tmp_path / "bad.sbatch.in"
    bad.write_text((REPO / "slurm" / "array_job.sbatch.in").read_text() + "#SBATCH --qos={{qos}}\n")
    r = moelab("submit", spec, "--results", tmp_path / "r", "--dry-run", "--template", bad, check=False)
    assert r.returncode == 2 and r.stderr == f"error: {bad}: unknown placeholder {{{{qos}}}}\n"
    # Running the script by hand submits exactly this sweep.
    subprocess.run(["bash", d / "submit.sh"], check=True, capture_output=True)
    wait_for_empty_queue()
    assert all(r["state"] == "done" for r in records(tmp_path / "r").values())
    assert len(records(tmp_path / "r")) == 19


def test_usr1_near_the_time_limit_checkpoints_requeues_and_resumes(slurm, model, moelab, tmp_path):
    """What Slurm does near a task's time limit (--signal=B:USR1@N), sent by hand: the batch
    script passes USR1 to the job, fine-tuning saves a checkpoint and stops, the task requeues
    itself, and the second attempt resumes and ends with the weights of an uninterrupted run."""
    from safetensors.torch import load_file
    import torch
    spec = write_sweep(tmp_path, model, criteria=["Max-RWN"], ratios=[0.5], procedures=["one-shot"], eval={},
                       recovery=[{"finetune": {"steps": 40, "lr": 1e-3, "data": ["cal.json"], "seq_len": 16,
                                               "batch_size": 2}}])
    moelab("submit", spec, "--results", tmp_path / "r")
    jobs = plan(tmp_path / "r")["jobs"]
    ft = next(j for j in jobs if j["kind"] == "finetune")
    sub = next(json.loads(l) for l in (tmp_path / "r" / "slurm" / "submissions.jsonl").read_text().splitlines()
               if json.loads(l)["stage"] == "finetune")
    task = sub["array_job"] + "_0"
    usr1_once_checkpointed(task, tmp_path / "r" / (ft["output"] + ".ckpt") / "state.json")
    wait_for_empty_queue()
    rec = records(tmp_path / "r")[ft["id"]]
    assert rec["state"] == "done" and rec["attempt"] == 2, rec
    log = (tmp_path / "r" / rec["log"]).read_text()
    assert "checkpoint saved" in log and "resuming after step" in log
    slurm_out = (tmp_path / "r" / "logs" / f"slurm-{task}.out").read_text()
    assert "checkpointing and requeueing" in slurm_out
    moelab("sweep", "run", spec, "--results", tmp_path / "local")
    a = load_file(str(tmp_path / "r" / ft["output"] / "model.safetensors"))
    b = load_file(str(tmp_path / "local" / ft["output"] / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_usr1_stops_a_calibration_which_requeues_and_ends_with_the_uninterrupted_statistics(
        slurm, model, moelab, tmp_path):
    """A calibration task near its time limit (USR1 sent by hand, as Slurm's --signal does):
    both ranks stop at the same batch, save their sums, the task requeues itself, and the
    second attempt continues from that batch to the statistics file of an uninterrupted run,
    bit for bit."""
    import h5py
    import numpy as np
    spec = write_sweep(tmp_path, model, criteria=["EAN", "REAP"], ratios=[0.5], procedures=["one-shot"], eval={},
                       calibration=[{"name": "c", "data": ["cal.json"], "seq_len": 16, "num_samples": 0,
                                     "checkpoint_every": 1}])
    cal = json.loads((tmp_path / "cal.json").read_text())["input_ids"]
    (tmp_path / "cal.json").write_text(json.dumps({"input_ids": cal * 120}))  # 960 sequences: 60 steps
    moelab("submit", spec, "--results", tmp_path / "r")
    job = next(j for j in plan(tmp_path / "r")["jobs"] if j["kind"] == "calibrate")
    assert "--checkpoint-every" in job["args"]
    sub = next(json.loads(l) for l in (tmp_path / "r" / "slurm" / "submissions.jsonl").read_text().splitlines()
               if json.loads(l)["stage"] == "calibrate")
    task = sub["array_job"] + "_0"
    manifest = tmp_path / "r" / (job["output"] + ".ckpt") / "checkpoint.json"
    usr1_once_checkpointed(task, manifest)
    wait_for_empty_queue()
    rec = records(tmp_path / "r")[job["id"]]
    assert rec["state"] == "done" and rec["attempt"] == 2, rec
    log = (tmp_path / "r" / rec["log"]).read_text()
    assert "stopped by a signal after step" in log and "resuming calibration after step" in log, log[-3000:]
    assert not manifest.parent.exists()  # removed once the statistics are written
    moelab("sweep", "run", spec, "--results", tmp_path / "local")
    with h5py.File(tmp_path / "r" / job["output"]) as a, h5py.File(tmp_path / "local" / job["output"]) as b:
        names = []
        b.visit(names.append)
        for n in names:
            if isinstance(b[n], h5py.Dataset):
                assert np.array_equal(a[n][()], b[n][()]), n


def test_srun_launcher_runs_multi_rank_jobs_as_one_mpi_job(slurm, model, moelab, moelab_bin, tmp_path):
    spec = write_sweep(tmp_path, model, criteria=["Max-RWN"], ratios=[0.5], procedures=["one-shot"],
                       slurm={"launcher": "srun", "srun_mpi": "pmix"})
    moelab("submit", spec, "--results", tmp_path / "r")
    wait_for_empty_queue()
    recs = records(tmp_path / "r")
    assert len(recs) == 4 and all(r["state"] == "done" for r in recs.values())
    ev = next(j for j in plan(tmp_path / "r")["jobs"] if j["kind"] == "eval" and j["tags"]["criterion"] != "none")
    log = (tmp_path / "r" / "logs" / f"{ev['id']}.log").read_text()
    assert "$ srun --mpi=pmix --ntasks 2 " in log
    assert len((tmp_path / "r" / ev["output"]).read_text().splitlines()) == 1  # one rank 0, one record
    moelab("sweep", "run", spec, "--results", tmp_path / "local")
    # srun places ranks on CPUs as Slurm's task plugin says and mpirun as OpenMPI binds them, so
    # the two can run libtorch with other thread counts: float32 sums may round differently
    # (seen: 1e-10 relative in a perplexity), hence a tolerance here and equality elsewhere.
    got, want = eval_metrics(tmp_path / "r"), eval_metrics(tmp_path / "local")
    assert got.keys() == want.keys()
    for key in want:
        assert [t for t, _ in got[key]] == [t for t, _ in want[key]]
        for (_, a), (_, b) in zip(got[key], want[key]):
            assert a.keys() == b.keys() and all(math.isclose(a[m], b[m], rel_tol=1e-7) for m in a), (key, a, b)
    # srun without an MPI plugin would start unrelated copies: moelab refuses.
    r = subprocess.run(["srun", "--mpi=none", "--ntasks", "2", "--mem", "1G", moelab_bin, "forward", model, "--text", "hello"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "error: srun: started 2 tasks that are not one MPI job: use srun --mpi=pmix" in r.stderr
