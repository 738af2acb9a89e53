"""moelab sweep plan: a YAML spec validated and expanded into a job graph that shares
calibration and scoring, with stable job ids; bad specs fail before anything runs,
naming the key."""
import json

import pytest
import yaml

from helpers import SEQ_LEN


def write_spec(tmp_path, fixtures, **over):
    (tmp_path / "cal.json").write_text(json.dumps({"input_ids": [[1 + (i * 7 + j) % 500 for j in range(SEQ_LEN)]
                                                                for i in range(6)]}))
    (tmp_path / "wiki.txt").write_text("hello world " * 50)
    spec = {
        "name": "t",
        "model": str(fixtures / "models" / "mixtral"),
        "calibration": [{"name": "c", "data": ["cal.json"], "seq_len": SEQ_LEN, "num_samples": 0}],
        "criteria": ["EAN", "Max-REAP", "RWN"],
        "ratios": [0.25, 0.5],
        "procedures": ["one-shot", "iterative"],
        "recovery": ["none", {"finetune": {"steps": 2, "lr": 1e-4, "data": ["cal.json"], "seq_len": SEQ_LEN}}],
        "exclude": [{"criterion": "RWN", "procedure": "iterative"}],
        "eval": {"perplexity": [{"name": "wiki", "data": "wiki.txt"}], "max_length": SEQ_LEN},
        "resources": {"calibrate": {"ranks": 2, "mem": "8G", "time": "00:30:00"}},
    }
    spec.update(over)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def plan(moelab, path):
    return json.loads(moelab("sweep", "plan", path, "--json", "-").stdout)


def test_plan_shares_calibration_and_scoring_and_counts_every_job(fixtures, moelab, tmp_path):
    g = plan(moelab, write_spec(tmp_path, fixtures))
    # 3 criteria x 2 ratios x 2 procedures x 2 recoveries, minus RWN iterative (2 ratios x 2 recoveries).
    assert g["grid_points"] == 3 * 2 * 2 * 2 - 4
    kinds = {}
    for j in g["jobs"]:
        kinds.setdefault(j["kind"], []).append(j)
    # One calibration feeds both data criteria; one scoring job serves all three.
    assert len(kinds["calibrate"]) == 1 and "EAN,REAP" in kinds["calibrate"][0]["args"]
    assert len(kinds["score"]) == 1 and "EAN,REAP,RWN" in kinds["score"][0]["args"]
    # A prune job per (criterion, ratio, procedure) point; recovery shares it.
    assert len(kinds["prune"]) == 3 * 2 * 2 - 2
    assert len(kinds["finetune"]) == len(kinds["prune"])
    # Every final model evaluated, plus the unpruned one once.
    assert len(kinds["eval"]) == 2 * len(kinds["prune"]) + 1
    ids = [j["id"] for j in g["jobs"]]
    assert len(set(ids)) == len(ids)
    pos = {j["id"]: i for i, j in enumerate(g["jobs"])}
    assert all(pos[d] < pos[j["id"]] for j in g["jobs"] for d in j["deps"])  # dependencies first
    one_shot = [j for j in kinds["prune"] if "--scores" in j["args"]]
    assert all(j["deps"] == [kinds["score"][0]["id"]] for j in one_shot)
    assert kinds["calibrate"][0]["resources"] == {"ranks": 2, "gpus": 0, "mem": "8G", "time": "00:30:00"}
    # Stable ids: the same spec gives the same graph.
    assert plan(moelab, write_spec(tmp_path, fixtures)) == g


@pytest.mark.parametrize("over,key,words", [
    ({"criteria": ["EAN", "REAPP"]}, "criteria[1]", 'did you mean "REAP"'),
    ({"ratios": [0.25, 1.5]}, "ratios[1]", "outside [0, 1)"),
    ({"model": "/no/such/model"}, "model", "does not exist"),
    ({"resources": {"prune": {"mem": "lots"}}}, "resources.prune.mem", "Slurm memory size"),
    ({"resources": {"eval": {"time": "1h"}}}, "resources.eval.time", "Slurm time limit"),
    # score jobs take calibrate's resources (schedulers::resource_kind): no key of their own
    ({"resources": {"score": {"ranks": 2}}}, "resources.score", "unknown job kind (calibrate, prune, finetune, eval)"),
    ({"criteria": [{"name": "EAN", "direction": "up"}]}, "criteria[0].direction", '"up" is not min or max'),
    ({"procedures": ["one-shot", "greedy"]}, "procedures[1]", "not one-shot"),
    ({"exclude": [{"colour": "red"}]}, "exclude[0].colour", "unknown key"),
    # Found by the fuzzer: a filter's ratio that is not a number ended in an uncaught stod.
    ({"include": [{"criterion": "EAN", "ratio": "NUL"}]}, "include[0].ratio", "a number"),
    ({"exclude": [{"seed": "first"}]}, "exclude[0].seed", "expected"),
    ({"ratios": "half"}, "ratios", "a number"),
    ({"recovery": [{"kshot": 0}]}, "recovery[0].kshot", "positive"),
    ({"recovery": [{"kshot": 2}]}, "recovery[0]", "needs eval.tasks"),
    ({"recovery": [{"finetune": {"steps": 2}}]}, "recovery[0].finetune", "either data"),
    ({"slurm": {"launcher": "ssh"}}, "slurm.launcher", "not mpirun or srun"),
    ({"slurm": {"queue": "x"}}, "slurm.queue", "unknown key"),
    ({"device": "tpu"}, "device", "not cpu or cuda"),
    ({"lottery": {"start_tokens": 0}}, "lottery.start_tokens", "positive"),
    ({"lottery": {"budget": 1}}, "lottery.budget", "unknown key"),
    ({"calibration": [{"name": "c", "data": ["cal.json"], "checkpoint_every": -1}]},
     "calibration[0].checkpoint_every", ">= 0"),
    ({"calibration": [{"name": "c", "data": ["cal.json"], "chekpoint_every": 4}]},
     "calibration[0].chekpoint_every", "unknown key"),
    # Hostile strings that would reach batch scripts or paths.
    ({"name": "x\nrm -rf /tmp/victim"}, "name", "not a plain name"),
    ({"name": "../../escape"}, "name", "not a plain name"),
    ({"name": "$(touch pwned)"}, "name", "not a plain name"),
    ({"slurm": {"partition": "gpu\n#SBATCH --uid=0"}}, "slurm.partition", "not a Slurm partition"),
    ({"slurm": {"account": "a; touch pwned"}}, "slurm.account", "not a Slurm account"),
    ({"slurm": {"sbatch_args": ["--qos=high\ntouch pwned"]}}, "slurm.sbatch_args[0]", "not one sbatch option"),
    ({"slurm": {"sbatch_args": ["touch pwned"]}}, "slurm.sbatch_args[0]", "not one sbatch option"),
    ({"slurm": {"srun_mpi": "pmix; touch pwned"}}, "slurm.srun_mpi", "not an srun MPI plugin"),
])
def test_bad_specs_fail_before_anything_runs_naming_the_key(over, key, words, fixtures, moelab, tmp_path):
    proc = moelab("sweep", "plan", write_spec(tmp_path, fixtures, **over), check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert f"sweep.yaml: {key}:" in proc.stderr and words in proc.stderr, proc.stderr


def arg(job, name):
    return job["args"][job["args"].index(name) + 1] if name in job["args"] else None


@pytest.mark.parametrize("samples,ranks,every,want", [
    (0, 2, None, "8"),         # all of the data: size unknown, every 8 batches
    (640, 2, None, "4"),       # 80 batches on 2 ranks: 40 steps, about ten checkpoints
    (640, 1, None, "8"),
    (16, 1, None, "1"),        # 2 steps: never less than 1
    (640, 2, 5, "5"),          # the spec's own
    (640, 2, 0, None),         # 0: off
])
def test_calibration_jobs_are_resumable_with_their_checkpoint_beside_the_output(samples, ranks, every, want,
                                                                              fixtures, moelab, tmp_path):
    cal = {"name": "c", "data": ["cal.json"], "seq_len": SEQ_LEN, "num_samples": samples}
    if every is not None:
        cal["checkpoint_every"] = every
    g = plan(moelab, write_spec(tmp_path, fixtures, calibration=[cal],
                                resources={"calibrate": {"ranks": ranks, "mem": "8G", "time": "00:30:00"}}))
    job = next(j for j in g["jobs"] if j["kind"] == "calibrate")
    assert arg(job, "--checkpoint-every") == want
    if want:
        assert arg(job, "--checkpoint-dir") == "{out}/" + job["output"] + ".ckpt"


def test_calibrations_of_multi_pass_statistics_are_not_checkpointed(fixtures, moelab, tmp_path):
    # EGS needs a backward pass, EAO a second pass: one-pass sums only are checkpointed.
    g = plan(moelab, write_spec(tmp_path, fixtures, criteria=["EAN", "EGS", "EAO"], procedures=["one-shot"],
                                recovery=["none"], exclude=[]))
    jobs = [j for j in g["jobs"] if j["kind"] == "calibrate"]
    assert len(jobs) == 1 and "--checkpoint-every" not in jobs[0]["args"]
    g = plan(moelab, write_spec(tmp_path, fixtures, criteria=["EAN", "REAP"], procedures=["one-shot"],
                                recovery=["none"], exclude=[]))
    assert "--checkpoint-every" in next(j for j in g["jobs"] if j["kind"] == "calibrate")["args"]


def test_kshot_and_sft_recovery_share_the_pruned_models(fixtures, moelab, tmp_path):
    (tmp_path / "task.jsonl").write_text(json.dumps({"query": "1 + 1 =", "choices": [" 2", " 3"], "gold": 0}) + "\n")
    (tmp_path / "sft.jsonl").write_text(json.dumps({"prompt": "1 + 1 =", "answer": " 2"}) + "\n")
    g = plan(moelab, write_spec(tmp_path, fixtures, criteria=["RWN"], ratios=[0.5], procedures=["one-shot"],
                                recovery=["none", {"kshot": 3}, {"finetune": {"steps": 2, "sft": "sft.jsonl"}}],
                                eval={"perplexity": [{"name": "wiki", "data": "wiki.txt"}], "tasks": ["task.jsonl"],
                                      "max_length": SEQ_LEN}))
    kinds = {}
    for j in g["jobs"]:
        kinds.setdefault(j["kind"], []).append(j)
    assert len(kinds["prune"]) == 1 and len(kinds["finetune"]) == 1  # k-shot and none share the pruned model
    ft = kinds["finetune"][0]
    assert "--sft" in ft["args"] and ft["args"][ft["args"].index("--sft") + 1] == str(tmp_path / "sft.jsonl")
    assert ft["tags"]["recovery"].startswith("sft-full-2steps")
    evals = {(j["tags"]["criterion"], j["tags"]["recovery"]): j for j in kinds["eval"]}
    assert set(evals) == {("none", "none"), ("none", "kshot-3"), ("Min-RWN", "none"), ("Min-RWN", "kshot-3"),
                          ("Min-RWN", ft["tags"]["recovery"])}
    shots = lambda j: j["args"][j["args"].index("--num-fewshot") + 1]
    assert shots(evals[("Min-RWN", "kshot-3")]) == "3" and shots(evals[("Min-RWN", "none")]) == "0"
    assert shots(evals[("none", "kshot-3")]) == "3"
    # Shots change task scores only: the k-shot evaluation skips perplexity.
    assert "--data" not in evals[("Min-RWN", "kshot-3")]["args"] and "--data" in evals[("Min-RWN", "none")]["args"]
    assert evals[("Min-RWN", "kshot-3")]["deps"] == evals[("Min-RWN", "none")]["deps"] == [kinds["prune"][0]["id"]]


def test_lottery_settings_and_device_reach_the_jobs(fixtures, moelab, tmp_path):
    base = plan(moelab, write_spec(tmp_path, fixtures, criteria=["EAN"], ratios=[0.5], procedures=["lottery"],
                                   recovery=["none"]))
    g = plan(moelab, write_spec(tmp_path, fixtures, criteria=["EAN"], ratios=[0.5], procedures=["lottery"],
                                recovery=["none"], device="cuda",
                                lottery={"start_tokens": 4096, "lr": 1e-4, "seq_len": 32, "data": ["wiki.txt"]}))
    prune = next(j for j in g["jobs"] if j["kind"] == "prune")
    a = prune["args"]
    opt = lambda name: a[a.index(name) + 1]
    assert (opt("--procedure"), opt("--lottery-start-tokens"), opt("--finetune-lr"), opt("--finetune-seq-len"),
            opt("--finetune-data"), opt("--device")) == ("lottery", "4096", "0.0001", "32", str(tmp_path / "wiki.txt"),
                                                         "cuda")
    # Every job that computes gets the device; the ids change with it (results may differ).
    assert all(j["args"][-2:] == ["--device", "cuda"] for j in g["jobs"] if j["kind"] != "score")
    assert not {j["id"] for j in g["jobs"]} & {j["id"] for j in base["jobs"]}
    # Defaults: the paper's budget and learning rate, the calibration text.
    b = next(j for j in base["jobs"] if j["kind"] == "prune")["args"]
    assert b[b.index("--lottery-start-tokens") + 1] == "200000" and b[b.index("--finetune-lr") + 1] == "1e-06"
    assert b[b.index("--finetune-data") + 1] == str(tmp_path / "cal.json") and "--device" not in b
