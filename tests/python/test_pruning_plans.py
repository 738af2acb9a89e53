"""Pruning plans: scores -> plan -> pruned checkpoint (one-shot uniform, global, per-layer
overrides, reduced top-k), the iterative procedure (statistics re-collected every round),
plans re-applied from file; every pruned checkpoint loads in transformers with logits equal
to moelab's own, and the plan's choices equal a naive selection from the scores."""
import functools
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

import helpers
from helpers import SEQ_LEN, assert_transformers_matches_moelab, input_error

token_file = functools.partial(helpers.token_file, n=8, seed=9)  # this file's calibration data


def scores_for(moelab, model, tmp_path, criteria="EAN,EUF,REAP"):
    data = token_file(tmp_path / "cal.json")
    moelab("calibrate", model, "--data", data, "--seq-len", SEQ_LEN, "--num-samples", 0, "--criteria", criteria,
           "--out", tmp_path / "s.h5")
    moelab("score", "--stats", tmp_path / "s.h5", "--criteria", criteria, "--out", tmp_path / "scores.json")
    return data, tmp_path / "scores.json", json.loads((tmp_path / "scores.json").read_text())["criteria"]


def naive_uniform(scores, ratio, direction):
    """Per layer: the round(ratio * E) lowest (min) / highest (max) scores; ties -> lower id."""
    out = {}
    for layer, s in scores.items():
        n = int(np.floor(ratio * len(s) + 0.5))
        order = sorted(range(len(s)), key=lambda e: (s[e] if direction == "min" else -s[e], e))
        out[int(layer)] = sorted(order[:n])
    return out


@pytest.mark.parametrize("family,direction", [("mixtral", "min"), ("qwen3", "max")])
def test_one_shot_plan_drops_the_extreme_scores_and_loads_in_transformers(family, direction, fixtures, moelab,
                                                                           tmp_path):
    model = fixtures / "models" / family
    _, scores_path, scores = scores_for(moelab, model, tmp_path)
    out, plan_path = tmp_path / "pruned", tmp_path / "plan.json"
    moelab("prune", model, "--scores", scores_path, "--criterion", "EAN", "--direction", direction, "--ratio", 0.5,
           "--plan-out", plan_path, "--out", out)
    plan = json.loads(plan_path.read_text())
    assert (plan["criterion"], plan["direction"], plan["ratio"], plan["procedure"]) == ("EAN", direction, 0.5,
                                                                                        "one-shot")
    want = naive_uniform(scores["EAN"]["layers"], 0.5, direction)
    assert {int(l): body["drop"] for l, body in plan["layers"].items()} == want
    assert_transformers_matches_moelab(moelab, fixtures, family, out, tmp_path)
    # The survivors are the checkpoint's experts the plan keeps, in order.
    original = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    pruned = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    layer = int(next(iter(plan["layers"])))
    keep = plan["layers"][str(layer)]["keep"]
    assert torch.equal(pruned.model.layers[layer].mlp.gate.weight, original.model.layers[layer].mlp.gate.weight[keep])
    # Re-applying the saved plan gives the same checkpoint.
    moelab("prune", model, "--plan", plan_path, "--out", tmp_path / "again")
    a, b = load_file(str(out / "model.safetensors")), load_file(str(tmp_path / "again" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_global_ratio_and_layer_overrides(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "mixtral"
    _, scores_path, scores = scores_for(moelab, model, tmp_path)
    # Global: the 12 lowest EUF scores over all 24 experts, never leaving a layer below k = 2.
    moelab("prune", model, "--scores", scores_path, "--criterion", "EUF", "--ratio", 0.5, "--scope", "global",
           "--plan-out", tmp_path / "global.json", "--out", tmp_path / "global")
    plan = json.loads((tmp_path / "global.json").read_text())
    cands = sorted((s, int(l), e) for l, vals in scores["EUF"]["layers"].items() for e, s in enumerate(vals))
    dropped, want = {0: [], 1: [], 2: []}, 12
    for s, l, e in cands:
        if sum(map(len, dropped.values())) == want:
            break
        if 8 - len(dropped[l]) > 2:
            dropped[l].append(e)
    assert {int(l): b["drop"] for l, b in plan["layers"].items()} == {l: sorted(v) for l, v in dropped.items()}
    counts = [len(b["keep"]) for b in plan["layers"].values()]
    assert sum(counts) == 12 and min(counts) >= 2
    assert_transformers_matches_moelab(moelab, fixtures, "mixtral", tmp_path / "global", tmp_path,
                                       trust_remote_code=len(set(counts)) > 1)
    # Uniform with an override: layer 1 drops a quarter, the others half.
    moelab("prune", model, "--scores", scores_path, "--criterion", "EUF", "--ratio", 0.5, "--layer-ratio", "1:0.25",
           "--plan-out", tmp_path / "over.json")
    plan = json.loads((tmp_path / "over.json").read_text())
    assert [len(plan["layers"][l]["keep"]) for l in ("0", "1", "2")] == [4, 6, 4]


def test_reduce_top_k_lowers_k_for_every_layer(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "mixtral"
    _, scores_path, _ = scores_for(moelab, model, tmp_path)
    proc = moelab("prune", model, "--scores", scores_path, "--criterion", "EAN", "--ratio", 0.875, "--out",
                  tmp_path / "x", check=False)
    assert proc.returncode == 2 and "fewer than top-k" in proc.stderr and "--reduce-top-k" in proc.stderr
    moelab("prune", model, "--scores", scores_path, "--criterion", "EAN", "--ratio", 0.875, "--reduce-top-k",
           "--out", tmp_path / "k1")
    cfg = json.loads((tmp_path / "k1" / "config.json").read_text())
    assert cfg["num_experts_per_tok"] == 1 and cfg["num_local_experts"] == 1
    assert_transformers_matches_moelab(moelab, fixtures, "mixtral", tmp_path / "k1", tmp_path)


def test_iterative_procedure_recollects_statistics_every_round(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "mixtral"
    data = token_file(tmp_path / "cal.json")
    proc = moelab("prune", model, "--procedure", "iterative", "--criterion", "EAN", "--ratio", 0.375, "--data", data,
                  "--seq-len", SEQ_LEN, "--num-samples", 0, "--plan-out", tmp_path / "plan.json", "--out",
                  tmp_path / "iter")
    log = proc.stderr + proc.stdout
    # round(0.375 * 8) = 3 drops per layer: three rounds, each re-collecting statistics.
    assert log.count("re-collecting EAN statistics") == 3
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["procedure"] == "iterative" and len(plan["rounds"]) == 3
    assert all(len(r) == 3 and all(len(d) == 1 for d in r.values()) for r in plan["rounds"])
    assert all(len(b["keep"]) == 5 for b in plan["layers"].values())
    # Round 1 drops each layer's lowest EAN on the full model, as one-shot scores say.
    _, _, scores = scores_for(moelab, model, tmp_path, "EAN")
    for layer, s in scores["EAN"]["layers"].items():
        assert plan["rounds"][0][layer] == [int(np.argmin(s))]
    # Dropped experts across rounds are the plan's drops, in checkpoint ids.
    for layer, body in plan["layers"].items():
        assert sorted(d for r in plan["rounds"] for d in r[layer]) == body["drop"]
    assert_transformers_matches_moelab(moelab, fixtures, "mixtral", tmp_path / "iter", tmp_path)
    # The plan applied to the original checkpoint gives the same model.
    moelab("prune", model, "--plan", tmp_path / "plan.json", "--out", tmp_path / "again")
    a = load_file(str(tmp_path / "iter" / "model.safetensors"))
    b = load_file(str(tmp_path / "again" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_plans_and_options_are_one_line_errors(fixtures, moelab, tmp_path):
    mixtral, qwen3 = fixtures / "models" / "mixtral", fixtures / "models" / "qwen3"
    _, scores_path, _ = scores_for(moelab, mixtral, tmp_path, "EUF")

    err = functools.partial(input_error, moelab)

    for ratio in (1.0, -0.1):
        assert "--ratio" in err("prune", mixtral, "--scores", scores_path, "--criterion", "EUF", "--ratio", ratio,
                                "--out", tmp_path / "x")
    assert "EUF" in err("prune", mixtral, "--scores", scores_path, "--criterion", "EAN", "--out", tmp_path / "x")
    moelab("prune", mixtral, "--scores", scores_path, "--criterion", "EUF", "--ratio", 0.25, "--plan-out",
           tmp_path / "plan.json")
    assert "different model" in err("prune", qwen3, "--plan", tmp_path / "plan.json", "--out", tmp_path / "x")
    plan = json.loads((tmp_path / "plan.json").read_text())
    plan["layers"]["1"]["keep"] = []
    (tmp_path / "all.json").write_text(json.dumps(plan))
    assert "drops all 8 experts" in err("prune", mixtral, "--plan", tmp_path / "all.json", "--out", tmp_path / "x")
    plan["layers"]["1"]["keep"] = [3]
    (tmp_path / "one.json").write_text(json.dumps(plan))
    assert "fewer than top-k" in err("prune", mixtral, "--plan", tmp_path / "one.json", "--out", tmp_path / "x")
    assert "scores" in err("prune", qwen3, "--scores", scores_path, "--criterion", "EUF", "--out", tmp_path / "x")
    assert "exactly one" in err("prune", mixtral, "--scores", scores_path, "--drop", "0:1", "--out", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_lottery_fine_tunes_between_rounds_with_a_doubling_budget(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "mixtral"
    data = token_file(tmp_path / "cal.json")
    proc = moelab("prune", model, "--procedure", "lottery", "--criterion", "EAN", "--ratio", 0.25, "--data", data,
                  "--seq-len", SEQ_LEN, "--num-samples", 0, "--finetune-data", data, "--finetune-seq-len", SEQ_LEN,
                  "--lottery-start-tokens", 64, "--finetune-batch-size", 2, "--finetune-lr", 1e-3, "--plan-out",
                  tmp_path / "plan.json", "--out", tmp_path / "lottery")
    log = proc.stderr + proc.stdout
    # Two rounds (round(0.25 * 8) = 2 drops): 64 then 128 tokens of 2 x 16-token sequences.
    assert "round 1: MoE Lottery fine-tuning, 64 tokens (2 steps" in log
    assert "round 2: MoE Lottery fine-tuning, 128 tokens (4 steps" in log
    assert log.count("re-collecting EAN statistics") == 2
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["procedure"] == "lottery" and len(plan["rounds"]) == 2
    assert all(len(b["keep"]) == 6 for b in plan["layers"].values())
    assert_transformers_matches_moelab(moelab, fixtures, "mixtral", tmp_path / "lottery", tmp_path)
    # Fine-tuned: the survivors' weights are no longer the checkpoint's.
    moelab("prune", model, "--plan", tmp_path / "plan.json", "--out", tmp_path / "plain")
    a = load_file(str(tmp_path / "lottery" / "model.safetensors"))
    b = load_file(str(tmp_path / "plain" / "model.safetensors"))
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)
