"""Pieces shared by the sweep executor tests (local and Slurm): a small sweep spec on the
mixtral fixture, and readers for a results directory's records and evaluation numbers."""
import json
import pathlib

import yaml

from helpers import SEQ_LEN


def write_sweep(dir_, model_dir, name="s", **over):
    """2 criteria x 2 ratios x 2 procedures; calibration and evaluation on 2 ranks."""
    dir_ = pathlib.Path(dir_)
    dir_.mkdir(parents=True, exist_ok=True)
    (dir_ / "cal.json").write_text(json.dumps({"input_ids": [[1 + (i * 7 + j) % 390 for j in range(SEQ_LEN)]
                                                             for i in range(8)]}))
    (dir_ / "wiki.txt").write_text("The quick brown fox jumps over the lazy dog. " * 40)
    spec = {
        "name": name,
        "model": str(model_dir),
        "calibration": [{"name": "c", "data": ["cal.json"], "seq_len": SEQ_LEN, "num_samples": 0}],
        "criteria": ["EAN", "Max-RWN"],
        "ratios": [0.25, 0.5],
        "procedures": ["one-shot", "iterative"],
        "eval": {"perplexity": [{"name": "wiki", "data": "wiki.txt"}], "max_length": SEQ_LEN},
        "resources": {"calibrate": {"ranks": 2, "mem": "1G", "time": "00:10:00"},
                      "prune": {"ranks": 1, "mem": "1G", "time": "00:10:00"},
                      "finetune": {"ranks": 2, "mem": "1G", "time": "00:10:00"},
                      "eval": {"ranks": 2, "mem": "1G", "time": "00:10:00"}},
    }
    spec.update(over)
    path = dir_ / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def plan(results):
    return json.loads((pathlib.Path(results) / "plan.json").read_text())


def status(moelab, results):
    """`moelab status RESULTS --json`, parsed."""
    return json.loads(moelab("status", results, "--json").stdout)


def records(results):
    d = pathlib.Path(results) / "jobs"
    return {p.stem: json.loads(p.read_text()) for p in d.glob("*.json")} if d.exists() else {}


def eval_metrics(results):
    """(criterion, ratio, procedure, recovery) -> [(task, metrics)] of every evaluation job's
    results file; keyed by grid point, not job id, so that two copies of a sweep with their
    data in different folders (hence different ids) compare."""
    out = {}
    for job in plan(results)["jobs"]:
        if job["kind"] != "eval":
            continue
        f = pathlib.Path(results) / job["output"]
        key = tuple(job["tags"][k] for k in ("criterion", "ratio", "procedure", "recovery"))
        out[key] = [(r["task"], r["metrics"]) for r in map(json.loads, f.read_text().splitlines())]
    return out
