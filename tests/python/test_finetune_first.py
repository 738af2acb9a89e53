"""Sweeps' finetune_first (Chowdhury et al., ICML 2024: prune experts of a model fine-tuned on
the downstream task): the model is fine-tuned once, every later job starts from the fine-tuned
one, and RouterNormChange scores it against the model as given - checked against the router
rows' norms read from both checkpoints with safetensors."""
import json
import pathlib
import subprocess

import numpy as np
import pytest
import yaml
from safetensors.torch import load_file

from helpers import DEFAULT_MODEL as MODEL

CORPUS = MODEL / "corpus"


def write_spec(tmp_path, **over):
    spec = {
        "name": "ft-first",
        "model": str(MODEL),
        "finetune_first": {"data": [str(CORPUS / "code.calibration.jsonl")], "steps": 4, "lr": 1e-3, "seq_len": 64,
                           "batch_size": 4, "params": "router"},
        "criteria": ["RouterNormChange", "Random"],
        "ratios": [0.5],
        "procedures": ["one-shot"],
        "eval": {"perplexity": [{"name": "code", "data": str(CORPUS / "code.quick.jsonl")}], "max_length": 128},
    }
    spec.update(over)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def router_norms(model_dir):
    w = load_file(str(pathlib.Path(model_dir) / "model.safetensors"))
    return {l: np.linalg.norm(w[f"model.layers.{l}.block_sparse_moe.gate.weight"].double().numpy(), axis=1)
            for l in range(4)}


def test_the_plan_fine_tunes_first_and_starts_every_job_from_the_fine_tuned_model(moelab, tmp_path):
    plan = json.loads(moelab("sweep", "plan", write_spec(tmp_path), "--json", "-").stdout)["jobs"]
    first = plan[0]
    assert first["kind"] == "finetune" and first["args"][:2] == ["finetune", str(MODEL)]
    assert "--params" in first["args"] and first["args"][first["args"].index("--params") + 1] == "router"
    tuned = "{out}/" + first["output"]
    for j in plan[1:]:
        if j["kind"] == "score":
            assert j["args"][:3] == ["score", "--model", tuned] and first["id"] in j["deps"]
            assert j["args"][j["args"].index("--second-model") + 1] == str(MODEL)
        if j["kind"] == "prune":
            assert j["args"][1] == tuned and first["id"] in j["deps"]
    unpruned = [j for j in plan if j["kind"] == "eval" and j["tags"]["criterion"] == "none"]
    assert len(unpruned) == 1 and unpruned[0]["args"][1] == tuned and unpruned[0]["deps"] == [first["id"]]


def test_router_norm_change_scores_and_prunes_the_fine_tuned_model_as_the_paper_does(moelab, tmp_path):
    results = tmp_path / "results"
    moelab("sweep", "run", write_spec(tmp_path), "--results", results)
    plan = json.loads((results / "plan.json").read_text())["jobs"]
    ft = next(j for j in plan if j["kind"] == "finetune")
    score = next(j for j in plan if j["kind"] == "score")
    tuned, pre = router_norms(results / ft["output"]), router_norms(MODEL)
    scores = json.loads((results / score["output"]).read_text())["criteria"]["RouterNormChange"]["layers"]
    for l in range(4):
        want = tuned[l] - pre[l]
        assert np.abs(want).max() > 0  # router-only fine-tuning moved the rows
        np.testing.assert_allclose(scores[str(l)], want, rtol=1e-6, atol=1e-9)
    # Min-RouterNormChange drops the 4 experts of least change per layer, keeping the most changed.
    prune = next(j for j in plan if j["kind"] == "prune" and j["tags"]["criterion"] == "Min-RouterNormChange")
    layers = json.loads((results / "prune" / (prune["id"] + ".plan.json")).read_text())["layers"]
    for l in range(4):
        top = sorted(np.argsort(-(tuned[l] - pre[l]))[:4].tolist())
        assert sorted(layers[str(l)]["keep"]) == top, (l, layers[str(l)], tuned[l] - pre[l])
    moelab("report", results)
    md = (results / "report" / "report.md").read_text()
    assert "Min-RouterNormChange" in md and "code PPL" in md


def test_router_norm_change_without_finetune_first_is_refused_naming_the_key(moelab_bin, tmp_path):
    spec = write_spec(tmp_path)
    data = yaml.safe_load(spec.read_text())
    del data["finetune_first"]
    spec.write_text(yaml.safe_dump(data))
    p = subprocess.run([moelab_bin, "sweep", "plan", spec], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "criteria" in p.stderr and "finetune_first" in p.stderr, p.stderr
    data["finetune_first"] = {"steps": 0, "data": [str(CORPUS / "code.calibration.jsonl")]}
    spec.write_text(yaml.safe_dump(data))
    p = subprocess.run([moelab_bin, "sweep", "plan", spec], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "finetune_first.steps" in p.stderr, p.stderr
