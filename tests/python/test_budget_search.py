"""Searched per-layer budgets (issue 27, EvoESAP-style): for a total ratio and a criterion's
scores, how many experts each layer drops, by a seeded (1+1) evolution from the uniform
allocation with the KL to the unpruned model on held-out text as fitness. Checked: the
fitness of the chosen and of the uniform allocation against transformers (the pruned
checkpoints' next-token distributions against the unpruned model's); never worse than
uniform; the same seed gives the same plan; a resumed search equals an uninterrupted one;
bad inputs are one-line errors."""
import json

import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

from helpers import DEFAULT_MODEL as MODEL, mixtral_with_tokenizer

SEQ = 32


@pytest.fixture(scope="module")
def setup(tmp_path_factory, moelab_bin):
    import subprocess
    d = tmp_path_factory.mktemp("search")
    tok = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    docs = [json.loads(l)["text"] for l in (MODEL / "corpus" / "en.test.jsonl").open()][:30]
    ids = [i for t in docs for i in tok.encode(t).ids]
    held = [ids[i * SEQ:(i + 1) * SEQ] for i in range(8)]
    (d / "held.json").write_text(json.dumps({"input_ids": held}))
    run = lambda *a: subprocess.run([moelab_bin, *map(str, a)], check=True, capture_output=True, text=True, cwd=d)
    run("calibrate", MODEL, "--data", MODEL / "corpus" / "en.calibration.jsonl", "--seq-len", 64, "--num-samples", 16,
        "--criteria", "EAN", "--out", "s.h5")
    run("score", "--stats", "s.h5", "--criteria", "EAN", "--out", "scores.json")
    return d, torch.tensor(held)


def search(moelab, d, name, *extra, budget=10, seed=1):
    moelab("prune", MODEL, "--scores", d / "scores.json", "--criterion", "EAN", "--ratio", 0.5, "--search-budget",
           budget, "--search-data", d / "held.json", "--search-seq-len", SEQ, "--search-samples", 0, "--search-seed",
           seed, *extra, "--plan-out", d / f"{name}.json", "--out", d / name)
    return json.loads((d / f"{name}.json").read_text())


def kl_to_unpruned(model_dir, ids):
    """Mean over target positions (all but each sequence's last) of KL(p_unpruned || p_model)."""
    def logp(path):
        m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, trust_remote_code=True).eval()
        with torch.no_grad():
            return torch.log_softmax(m(input_ids=ids).logits[:, :-1].float(), -1)
    t, s = logp(MODEL), logp(model_dir)
    return float((t.exp() * (t - s)).sum(-1).mean())


def test_the_searched_allocation_beats_uniform_and_its_fitness_is_transformers_kl(setup, moelab, tmp_path):
    d, held = setup
    p = search(moelab, d, "searched")
    s = p["search"]
    assert s["evaluations"] == 10 and s["targets"] == held.shape[0] * (SEQ - 1) and s["seed"] == 1
    assert s["fitness"] <= s["uniform_fitness"]
    # The total is the uniform one: half of 4 x 8 experts; every layer keeps at least top-2.
    drops = {int(l): len(v["drop"]) for l, v in p["layers"].items()}
    assert sum(drops.values()) == 16 and all(8 - n >= 2 for n in drops.values())
    assert {int(l): r for l, r in p["layer_ratios"].items()} == {l: n / 8 for l, n in drops.items()}
    # Within a layer the criterion decides: the lowest EAN scores go.
    ean = json.loads((d / "scores.json").read_text())["criteria"]["EAN"]["layers"]
    for l, v in p["layers"].items():
        assert sorted(v["drop"]) == sorted(sorted(range(8), key=lambda e: (ean[l][e], e))[:drops[int(l)]])
    # Both fitness values, recomputed by transformers from the checkpoints.
    assert kl_to_unpruned(d / "searched", held) == pytest.approx(s["fitness"], rel=1e-4)
    moelab("prune", MODEL, "--scores", d / "scores.json", "--criterion", "EAN", "--ratio", 0.5, "--out", tmp_path / "u")
    assert kl_to_unpruned(tmp_path / "u", held) == pytest.approx(s["uniform_fitness"], rel=1e-4)
    assert s["fitness"] < 0.9 * s["uniform_fitness"]  # on this model the search finds a clearly better one


def test_the_same_seed_gives_the_same_plan_and_a_resumed_search_equals_an_uninterrupted_one(setup, moelab, tmp_path):
    d, _ = setup
    a = search(moelab, d, "a", budget=12, seed=3)
    b = search(moelab, d, "b", budget=12, seed=3)
    assert a["layers"] == b["layers"] and a["search"] == b["search"]
    # Stopped after 5 evaluations, then resumed to 12 from the state file.
    state = tmp_path / "state.jsonl"
    search(moelab, d, "part", "--search-state", state, budget=5, seed=3)
    assert len(state.read_text().splitlines()) == 1 + 5
    with state.open("a") as f:
        f.write('{"drops": [1, 2')  # a line cut by a kill
    c = search(moelab, d, "resumed", "--search-state", state, budget=12, seed=3)
    assert c["layers"] == a["layers"] and c["search"]["fitness"] == a["search"]["fitness"]
    lines = state.read_text().splitlines()  # the cut line dropped, every evaluation once
    assert len(lines) == 1 + 12 and all(json.loads(l) for l in lines)
    # A state of another search is refused.
    r = moelab("prune", MODEL, "--scores", d / "scores.json", "--criterion", "EAN", "--ratio", 0.5, "--search-budget", 4,
               "--search-data", d / "held.json", "--search-seq-len", SEQ, "--search-samples", 0, "--search-seed", 9,
               "--search-state", state, "--out", tmp_path / "x", check=False)
    assert r.returncode != 0 and "state.jsonl" in r.stderr and "another search" in r.stderr


@pytest.mark.parametrize("extra,words", [
    (["--search-budget", -1], ["--search-budget"]),
    (["--search-budget", 4], ["--search-data"]),
    (["--search-budget", 4, "--search-data", "held.json", "--scope", "global"], ["uniform scope"]),
    (["--search-budget", 4, "--search-data", "held.json", "--layer-ratio", "0:0.25"], ["--layer-ratio"]),
    (["--search-budget", 4, "--search-data", "held.json", "--search-max-move", 0], ["--search-max-move"]),
])
def test_bad_search_settings_are_one_line_errors(extra, words, setup, moelab, tmp_path):
    d, _ = setup
    r = moelab("prune", MODEL, "--scores", d / "scores.json", "--criterion", "EAN", "--ratio", 0.5,
               *[d / x if x == "held.json" else x for x in extra], "--out", tmp_path / "o", check=False)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and all(w in lines[-1] for w in words), r.stderr
    assert not (tmp_path / "o").exists()


def test_the_searched_procedure_of_a_sweep_searches_and_reports_beside_one_shot(fixtures, moelab, tmp_path):
    from sweep_fixtures import write_sweep
    model, _ = mixtral_with_tokenizer(fixtures, tmp_path / "mixtral")
    spec = write_sweep(tmp_path / "spec", model, name="bs", criteria=["EAN"], ratios=[0.5],
                       procedures=["one-shot", "searched"],
                       budget_search={"budget": 4, "data": ["cal.json"], "seq_len": 16, "num_samples": 0})
    g = json.loads(moelab("sweep", "plan", spec, "--json", "-").stdout)
    prunes = {j["tags"]["procedure"]: j for j in g["jobs"] if j["kind"] == "prune"}
    assert set(prunes) == {"one-shot", "searched"}
    a = prunes["searched"]["args"]
    assert a[a.index("--search-budget") + 1] == "4" and a[a.index("--scores") + 1] == prunes["one-shot"]["args"][
        prunes["one-shot"]["args"].index("--scores") + 1]  # one scoring job serves both
    assert "--search-budget" not in prunes["one-shot"]["args"]
    results = tmp_path / "results"
    moelab("sweep", "run", spec, "--results", results)
    plan = json.loads((results / (prunes["searched"]["output"] + ".plan.json")).read_text())
    assert plan["search"]["evaluations"] == 4 and plan["search"]["fitness"] <= plan["search"]["uniform_fitness"]
    assert (results / (prunes["searched"]["output"] + ".search.jsonl")).exists()
    moelab("report", results, "--no-plots")
    md = (results / "report" / "report.md").read_text()
    assert "searched" in md


@pytest.mark.parametrize("over,key", [
    ({"procedures": ["searched"]}, "budget_search"),
    ({"procedures": ["searched"], "budget_search": {"budget": 0, "data": ["cal.json"]}}, "budget_search.budget"),
    ({"procedures": ["searched"], "budget_search": {"data": ["cal.json"], "size": 3}}, "budget_search.size"),
    ({"procedures": ["searched"], "budget_search": {"data": ["missing.json"]}}, "budget_search.data[0]"),
])
def test_bad_budget_search_settings_name_the_key(over, key, fixtures, moelab, tmp_path):
    from sweep_fixtures import write_sweep
    spec = write_sweep(tmp_path, fixtures / "models" / "mixtral", name="bs", **over)
    r = moelab("sweep", "plan", spec, check=False)
    assert r.returncode != 0 and key in r.stderr, r.stderr
