"""Issue 27, first two methods: the expert-output statistics (out_moments: per-channel sums of
f_j and f_j^2; out_max: the largest output value, REAP's `max_activations`), the MoNE
criteria (zxgx/mode-pd's `fusion` and `output_fluctuation`) and super-expert protection
(REAP's get_super_expert_indices), each checked against an independent Python computation:
per-(token, expert) outputs recomputed in float64 from the inputs transformers feeds each MoE
block, and the rule written again here with torch.quantile."""
import functools
import itertools
import json
import pathlib

import h5py
import numpy as np
import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

import helpers
from helpers import SEQ_LEN, calibrate, mixtral_with_tokenizer
from sweep_fixtures import write_sweep

token_file = functools.partial(helpers.token_file, n=8, seed=4)  # this file's calibration data


def calibrate_outputs(moelab, model, data, out, ranks=None, groups="out_moments,out_max"):
    """helpers.calibrate in float64 with the EUF criterion, collecting `groups`; returns the
    statistics file."""
    calibrate(moelab, model, data, out, ranks=ranks,
              options=("--dtype", "float64", "--criteria", "EUF", "--collect", groups))
    return out


@torch.no_grad()
def routed_outputs(model_dir, data):
    """Per MoE layer: (E, D, number of tokens, [(expert, gate, f_j(x) float64 [D])] over routed pairs)."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64, experts_implementation="eager").eval()
    cfg = model.config
    ids = torch.tensor(json.loads(data.read_text())["input_ids"])
    captured, hooks = {}, []
    for idx, layer in enumerate(model.model.layers):
        if hasattr(layer.mlp, "experts"):
            hooks.append(layer.mlp.register_forward_hook(
                lambda mod, inp, out, idx=idx: captured.setdefault(idx, []).append(inp[0].reshape(-1, inp[0].shape[-1]))))
    model(input_ids=ids)
    for h in hooks:
        h.remove()
    k, renorm = cfg.num_experts_per_tok, getattr(cfg, "norm_topk_prob", True)
    out = {}
    for idx, xs in captured.items():
        x = torch.cat(xs)
        mlp = model.model.layers[idx].mlp
        gu, down = mlp.experts.gate_up_proj, mlp.experts.down_proj
        E, F = gu.shape[0], gu.shape[1] // 2
        top_w, top_i = torch.topk(torch.softmax(x @ mlp.gate.weight.T, dim=-1), k, dim=-1)
        if renorm:
            top_w = top_w / top_w.sum(-1, keepdim=True)
        recs = []
        for t in range(x.shape[0]):
            for j in range(k):
                e = int(top_i[t, j])
                h = x[t] @ gu[e].T
                recs.append((e, float(top_w[t, j]), (torch.nn.functional.silu(h[:F]) * h[F:]) @ down[e].T))
        out[idx] = (E, x.shape[1], x.shape[0], recs)
    return out


def sums_of(E, D, recs):
    s, sq, mx, n, g = np.zeros((E, D)), np.zeros((E, D)), np.zeros(E), np.zeros(E), np.zeros(E)
    for e, gate, f in recs:
        s[e] += f.numpy()
        sq[e] += f.numpy() ** 2
        mx[e] = max(mx[e], float(f.max()))
        n[e] += 1
        g[e] += gate
    return s, sq, mx, n, g


@pytest.mark.parametrize("family", ["mixtral", "qwen3"])
def test_output_sums_and_maxima_equal_python_over_transformers_routed_tokens(family, fixtures, moelab, tmp_path):
    model = fixtures / "models" / family
    data = token_file(tmp_path / "cal.json")
    stats = calibrate_outputs(moelab, model, data, tmp_path / "s.h5")
    ref = routed_outputs(model, data)
    with h5py.File(stats) as f:
        assert set(f.attrs["collected"].decode().split(",")) >= {"usage", "out_moments", "out_max"}
        for layer, (E, D, _, recs) in ref.items():
            g = f[f"layer_{layer:03d}"]
            s, sq, mx, n, _ = sums_of(E, D, recs)
            assert g["out_sum_ED"].shape == (E, D) and g["out_max_E"].shape == (E,)
            np.testing.assert_allclose(g["out_sum_ED"][:], s, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(g["out_sq_sum_ED"][:], sq, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(g["out_max_E"][:], mx, rtol=1e-9, atol=1e-12)
            assert (g["out_max_E"][:] > 0).all()  # the random fixtures route tokens to every expert


def test_output_statistics_do_not_depend_on_the_rank_count(fixtures, moelab, tmp_path):
    """out_max is combined by maximum, the sums by sum: 1, 2 and 3 ranks agree."""
    model = fixtures / "models" / "mixtral"
    data = token_file(tmp_path / "cal.json")
    files = [calibrate_outputs(moelab, model, data, tmp_path / f"s{p}.h5", ranks=p) for p in (1, 2, 3)]
    with h5py.File(files[0]) as a:
        for path in files[1:]:
            with h5py.File(path) as b:
                for layer in a.attrs["moe_layers"].decode().split(","):
                    g, h = a[f"layer_{int(layer):03d}"], b[f"layer_{int(layer):03d}"]
                    np.testing.assert_array_equal(g["out_max_E"][:], h["out_max_E"][:])
                    np.testing.assert_allclose(g["out_sum_ED"][:], h["out_sum_ED"][:], rtol=1e-9, atol=1e-12)
                    np.testing.assert_allclose(g["out_sq_sum_ED"][:], h["out_sq_sum_ED"][:], rtol=1e-9, atol=1e-12)


def test_mone_scores_follow_the_authors_fusion_and_output_fluctuation(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "mixtral"
    data = token_file(tmp_path / "cal.json")
    stats = calibrate_outputs(moelab, model, data, tmp_path / "s.h5")
    moelab("score", "--stats", stats, "--criteria", "MoNE,MoNE-fluctuation", "--out", tmp_path / "scores.json")
    got = json.loads((tmp_path / "scores.json").read_text())["criteria"]
    for layer, (E, D, T, recs) in routed_outputs(model, data).items():
        # Independently: per expert, the population variance per channel of its routed outputs.
        fusion, fluct = [], []
        for e in range(E):
            fs = torch.stack([f for x, _, f in recs if x == e])
            var = fs.var(dim=0, unbiased=False) if len(fs) > 1 else torch.zeros(D, dtype=torch.float64)
            routing_score = sum(g for x, g, _ in recs if x == e) / T  # mean over ALL tokens, 0 where not routed
            fusion.append(routing_score * float(var.sqrt().norm()))
            fluct.append(float(var.norm()))
        np.testing.assert_allclose(got["MoNE"]["layers"][str(layer)], fusion, rtol=1e-6)
        np.testing.assert_allclose(got["MoNE-fluctuation"]["layers"][str(layer)], fluct, rtol=1e-6)


def reap_super_experts(stats_path, quantile=99.5, times=10, fraction=0.75):
    """REAP's get_super_expert_indices, written again over the HDF5 file."""
    with h5py.File(stats_path) as f:
        layers = [int(x) for x in f.attrs["moe_layers"].decode().split(",")]
        m = torch.tensor(np.stack([f[f"layer_{l:03d}/out_max_E"][:] for l in layers]))
    flat = m.flatten()
    threshold = max(torch.quantile(flat, quantile / 100).item(), flat.max().item() / times)
    mask = m > threshold
    mask[int(len(layers) * fraction):] = False
    return {layers[i]: sorted(int(e) for e in torch.nonzero(mask[i]).flatten()) for i in range(len(layers))
            if mask[i].any()}


def plant(stats_path, values):
    """Overwrites out_max_E with chosen values {layer: [E values]} (the rule's inputs)."""
    with h5py.File(stats_path, "r+") as f:
        for layer, v in values.items():
            f[f"layer_{layer:03d}/out_max_E"][...] = np.asarray(v, dtype=np.float64)


@pytest.fixture
def scored(fixtures, moelab, tmp_path):
    """A 4-MoE-layer fixture's statistics and scores of several criteria."""
    model = fixtures / "models" / "mixtral_swa_sharded"
    data = token_file(tmp_path / "cal.json")
    stats = calibrate_outputs(moelab, model, data, tmp_path / "s.h5", groups="out_moments,out_max,act_norms,out_norms")
    crits = "EAN,REAP,MoNE,EUF,Random,EWN"
    moelab("score", "--stats", stats, "--model", model, "--criteria", crits, "--out", tmp_path / "scores.json")
    return model, stats, tmp_path / "scores.json"


def protected_plan(moelab, model, stats, scores, out_dir, criterion, ratio, *extra, direction="min", scope="uniform"):
    plan = out_dir / f"plan-{criterion}-{ratio}-{direction}-{scope}.json"
    moelab("prune", model, "--scores", scores, "--criterion", criterion, "--direction", direction, "--ratio", ratio,
           "--scope", scope, "--protect-super-experts", "--stats", stats, *extra, "--plan-out", plan)
    return json.loads(plan.read_text())


def plant_super_experts(stats, scores):
    """Super experts where Min-EAN would drop first: the lowest EAN of the first two MoE
    layers (values 50 and 30) and of the last (80: outside the first 75% of the layers),
    every other expert between 1 and 2. Returns (MoE layers, E, lowest-EAN expert per layer).
    With 4 layers x 8 experts the 99.5th percentile lies between the two largest values, so
    the tests take the 90th (--super-expert-quantile 90): a threshold of max / 10 = 8."""
    with h5py.File(stats) as f:
        layers = [int(x) for x in f.attrs["moe_layers"].decode().split(",")]
        E = f[f"layer_{layers[0]:03d}/out_max_E"].shape[0]
    ean = json.loads(scores.read_text())["criteria"]["EAN"]["layers"]
    rng = np.random.default_rng(0)
    values = {l: rng.uniform(1, 2, E) for l in layers}
    lowest = {l: int(np.argmin(ean[str(l)])) for l in layers}
    values[layers[0]][lowest[layers[0]]] = 50.0
    values[layers[1]][lowest[layers[1]]] = 30.0
    values[layers[-1]][lowest[layers[-1]]] = 80.0
    plant(stats, values)
    return layers, E, lowest


Q90 = ("--super-expert-quantile", 90)


def test_super_experts_are_reaps_and_never_dropped_by_any_criterion_or_ratio(scored, moelab, tmp_path):
    model, stats, scores = scored
    layers, E, lowest = plant_super_experts(stats, scores)
    want = reap_super_experts(stats, quantile=90)
    assert len(layers) == 4 and want == {layers[0]: [lowest[layers[0]]], layers[1]: [lowest[layers[1]]]}
    for crit, ratio, direction, scope in itertools.product(["EAN", "REAP", "MoNE", "Random", "EWN"], [0.25, 0.5, 0.75],
                                                           ["min", "max"], ["uniform", "global"]):
        p = protected_plan(moelab, model, stats, scores, tmp_path, crit, ratio, "--reduce-top-k", *Q90,
                           direction=direction, scope=scope)
        assert {int(l): v for l, v in p["protected"].items()} == want
        assert "q90" in p["protect_rule"] and "75%" in p["protect_rule"]
        for l, ids in want.items():
            assert not set(ids) & set(p["layers"][str(l)]["drop"]), (crit, ratio, direction, scope, l)
        # The budget holds where it can: uniform layers drop round(r E) each.
        if scope == "uniform":
            for l in layers:
                assert len(p["layers"][str(l)]["drop"]) == min(int(np.floor(ratio * E + 0.5)),
                                                             E - len(want.get(l, [])))
    # Without protection Min-EAN drops them; with it the next ones go instead.
    moelab("prune", model, "--scores", scores, "--criterion", "EAN", "--ratio", 0.25, "--plan-out", tmp_path / "u.json")
    plain = json.loads((tmp_path / "u.json").read_text())
    assert lowest[layers[0]] in plain["layers"][str(layers[0])]["drop"] and "protected" not in plain
    # The thresholds of the rule are options: a higher factor floor and every layer.
    p = protected_plan(moelab, model, stats, scores, tmp_path, "EAN", 0.25, *Q90, "--super-expert-layers", 1,
                       "--super-expert-factor", 1.5)
    assert {int(l): v for l, v in p["protected"].items()} == reap_super_experts(stats, 90, 1.5, 1.0)
    assert p["protected"] == {str(layers[-1]): [lowest[layers[-1]]]}
    # The default rule (99.5th percentile) on these 32 values: only the largest, which lies
    # in the last layer, outside the layers searched: nothing to protect, every layer prunes.
    assert reap_super_experts(stats) == {}
    p = protected_plan(moelab, model, stats, scores, tmp_path, "EAN", 0.25)
    assert "protected" not in p and lowest[layers[0]] in p["layers"][str(layers[0])]["drop"]


def test_a_plan_that_drops_a_protected_expert_is_refused(scored, moelab, tmp_path):
    model, stats, scores = scored
    plant_super_experts(stats, scores)
    p = protected_plan(moelab, model, stats, scores, tmp_path, "EAN", 0.5, *Q90)
    layer, ids = next(iter(p["protected"].items()))
    body = p["layers"][layer]
    body["keep"] = [e for e in body["keep"] if e != ids[0]] + [body["drop"][0]]
    (tmp_path / "bad.json").write_text(json.dumps(p))
    r = moelab("prune", model, "--plan", tmp_path / "bad.json", "--out", tmp_path / "o", check=False)
    assert r.returncode != 0 and "which it protects" in r.stderr and not (tmp_path / "o").exists()


@pytest.mark.parametrize("args,words", [
    (["--super-expert-quantile", "0"], ["--super-expert-quantile", "(0, 100]"]),
    (["--super-expert-quantile", "100.5"], ["--super-expert-quantile", "(0, 100]"]),
    (["--super-expert-factor", "0.5"], ["--super-expert-factor", ">= 1"]),
    (["--super-expert-layers", "0"], ["--super-expert-layers", "(0, 1]"]),
    (["--super-expert-layers", "1.5"], ["--super-expert-layers", "(0, 1]"]),
])
def test_rule_values_out_of_range_are_one_line_errors(args, words, scored, moelab, tmp_path):
    model, stats, scores = scored
    r = moelab("prune", model, "--scores", scores, "--criterion", "EAN", "--ratio", 0.5, "--protect-super-experts",
               "--stats", stats, *args, "--out", tmp_path / "o", check=False)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and all(w in lines[-1] for w in words), r.stderr
    assert not (tmp_path / "o").exists()


def test_statistics_without_the_new_groups_say_which_and_how_to_collect_them(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "mixtral"
    data = token_file(tmp_path / "cal.json")
    stats = calibrate_outputs(moelab, model, data, tmp_path / "s.h5", groups="act_norms")
    r = moelab("score", "--stats", stats, "--criteria", "MoNE", "--out", tmp_path / "x.json", check=False)
    assert r.returncode != 0 and "lacks \"out_moments\"" in r.stderr and "calibrate ... --criteria MoNE" in r.stderr
    moelab("score", "--stats", stats, "--criteria", "EAN", "--out", tmp_path / "scores.json")
    r = moelab("prune", model, "--scores", tmp_path / "scores.json", "--criterion", "EAN", "--ratio", 0.5,
               "--protect-super-experts", "--stats", stats, "--out", tmp_path / "o", check=False)
    assert r.returncode != 0 and "out_max" in r.stderr and "--collect out_max" in r.stderr and "s.h5" in r.stderr
    assert not (tmp_path / "o").exists()
    r = moelab("prune", model, "--scores", tmp_path / "scores.json", "--criterion", "EAN", "--ratio", 0.5,
               "--protect-super-experts", "--out", tmp_path / "o", check=False)
    assert r.returncode != 0 and "--stats" in r.stderr
    # Statistics of another model (the qwen3 fixture has other MoE layers / counts).
    other = calibrate_outputs(moelab, fixtures / "models" / "qwen3", data, tmp_path / "q.h5")
    r = moelab("prune", model, "--scores", tmp_path / "scores.json", "--criterion", "EAN", "--ratio", 0.5,
               "--protect-super-experts", "--stats", other, "--out", tmp_path / "o", check=False)
    assert r.returncode != 0 and "different model" in r.stderr


def test_default_calibration_collects_what_mone_and_protection_need(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "mixtral"
    data = token_file(tmp_path / "cal.json", n=2)
    moelab("calibrate", model, "--data", data, "--seq-len", SEQ_LEN, "--num-samples", 0, "--out", tmp_path / "s.h5")
    with h5py.File(tmp_path / "s.h5") as f:
        assert {"out_moments", "out_max"} <= set(f.attrs["collected"].decode().split(","))


def test_a_sweep_compares_protected_and_plain_pruning_and_the_report_names_the_super_experts(fixtures, moelab,
                                                                                              tmp_path):
    spec = write_sweep(tmp_path / "spec", fixtures / "models" / "mixtral", name="se", criteria=["MoNE", "Max-RWN"],
                       ratios=[0.25], procedures=["one-shot", "iterative"], protect_super_experts=[False, True],
                       exclude=[{"criterion": "Max-RWN", "procedure": "iterative"}])
    g = json.loads(moelab("sweep", "plan", spec, "--json", "-").stdout)
    cal = [j for j in g["jobs"] if j["kind"] == "calibrate"]
    prunes = [j for j in g["jobs"] if j["kind"] == "prune"]
    assert len(cal) == 1 and "out_max" in cal[0]["args"][cal[0]["args"].index("--collect") + 1]
    # One-shot points twice (plain and protected), the iterative one once (unprotected).
    tags = sorted((j["tags"]["criterion"], j["tags"]["procedure"]) for j in prunes)
    assert tags == [("Max-RWN", "one-shot"), ("Max-RWN+SE", "one-shot"), ("Min-MoNE", "iterative"),
                    ("Min-MoNE", "one-shot"), ("Min-MoNE+SE", "one-shot")]
    for j in prunes:
        protected = j["tags"]["criterion"].endswith("+SE")
        assert ("--protect-super-experts" in j["args"]) == protected
        if protected:  # the weight criterion's too: the sweep's calibration set
            assert cal[0]["id"] in j["deps"] and j["args"][j["args"].index("--stats") + 1].endswith(cal[0]["output"])
    # Without the key: the graph of before (no --collect, no protection).
    spec2 = write_sweep(tmp_path / "spec2", fixtures / "models" / "mixtral", name="se", criteria=["MoNE", "Max-RWN"],
                        ratios=[0.25], procedures=["one-shot"])
    g2 = json.loads(moelab("sweep", "plan", spec2, "--json", "-").stdout)
    assert not any("--protect-super-experts" in j["args"] or "--collect" in j["args"] for j in g2["jobs"])
    # Run it; the report has rows for both and its notes list the protected experts.
    results = tmp_path / "results"
    model, _ = mixtral_with_tokenizer(fixtures, tmp_path / "mixtral")  # evaluation reads text
    spec3 = write_sweep(tmp_path / "spec3", model, name="se", criteria=["MoNE"],
                        ratios=[0.5], procedures=["one-shot"], protect_super_experts=[False, True])
    moelab("sweep", "run", spec3, "--results", results)
    plans = {json.loads(p.read_text()).get("protected") is not None: json.loads(p.read_text())
             for p in results.glob("prune/*.plan.json")}
    assert set(plans) == {True, False}
    protected = plans[True]["protected"]
    assert protected and all(not set(ids) & set(plans[True]["layers"][l]["drop"]) for l, ids in protected.items())
    moelab("report", results, "--no-plots")
    md = (results / "report" / "report.md").read_text()
    assert "| Min-MoNE |" in md and "| Min-MoNE+SE |" in md
    line = next(l for l in md.splitlines() if "super experts of" in l)
    assert "kept by 1 prune job" in line
    for layer, ids in protected.items():
        assert f"layer {layer}: " + ", ".join(map(str, ids)) in line


def test_bad_protect_super_experts_key_names_it(fixtures, moelab, tmp_path):
    spec = write_sweep(tmp_path, fixtures / "models" / "mixtral", name="se", protect_super_experts="often")
    r = moelab("sweep", "plan", spec, check=False)
    assert r.returncode != 0 and "protect_super_experts" in r.stderr
    spec = write_sweep(tmp_path, fixtures / "models" / "mixtral", name="se", protect_super_experts=True, calibration=[],
                       criteria=["RWN"], procedures=["one-shot"])
    r = moelab("sweep", "plan", spec, check=False)
    assert r.returncode != 0 and "protect_super_experts" in r.stderr and "calibration" in r.stderr


def test_the_readme_commands_run_on_the_default_model(moelab, tmp_path):
    """The README's MoNE and protection lines, as a new user types them (smaller calibration)."""
    repo = pathlib.Path(__file__).resolve().parents[2]
    model = repo / "models" / "debian-moe"
    moelab("calibrate", model, "--data", model / "corpus" / "en.calibration.jsonl", "--seq-len", 64, "--num-samples",
           8, "--out", "stats.h5", cwd=tmp_path)
    moelab("score", "--stats", "stats.h5", "--model", model, "--criteria", "EAN,REAP,RWN", "--out", "scores.json",
           cwd=tmp_path)
    moelab("score", "--stats", "stats.h5", "--criteria", "MoNE,MoNE-fluctuation", "--out", "mone.json", cwd=tmp_path)
    mone = json.loads((tmp_path / "mone.json").read_text())["criteria"]
    assert set(mone) == {"MoNE", "MoNE-fluctuation"} and all(v >= 0 for l in mone["MoNE"]["layers"].values() for v in l)
    moelab("prune", model, "--scores", "scores.json", "--criterion", "EAN", "--ratio", 0.5, "--protect-super-experts",
           "--stats", "stats.h5", "--plan-out", "plan-se.json", "--out", "pruned-se/", cwd=tmp_path)
    plan = json.loads((tmp_path / "plan-se.json").read_text())
    assert plan["protect_rule"].startswith("super experts: out_max > ")
    assert {int(l): v for l, v in plan.get("protected", {}).items()} == reap_super_experts(tmp_path / "stats.h5")
    assert (tmp_path / "pruned-se" / "config.json").exists()
    # The README's other issue-27 lines, as typed (model paths relative to the repository).
    moelab("prune", model, "--scores", "mone.json", "--criterion", "MoNE", "--ratio", 0.5, "--substitute", "novices",
           "--stats", "stats.h5", "--out", "mone/", cwd=tmp_path)
    assert json.loads((tmp_path / "mone" / "config.json").read_text())["moelab_novices_per_layer"] == [4, 4, 4, 4]
    moelab("prune", model, "--scores", "scores.json", "--criterion", "EAN", "--ratio", 0.5, "--search-budget", 24,
           "--search-data", model / "corpus" / "en.calibration.jsonl", "--search-seq-len", 128, "--search-state",
           "search.jsonl", "--plan-out", "plan-searched.json", "--out", "pruned-searched/", cwd=tmp_path)
    s = json.loads((tmp_path / "plan-searched.json").read_text())["search"]
    assert 1 < s["evaluations"] <= 24 and s["fitness"] <= s["uniform_fitness"]
    moelab("prune", model, "--drop", "0:1,5", "--drop", "1:2", "--out", "pruned/", cwd=tmp_path)
    moelab("finetune", "pruned/", "--teacher", model, "--params", "router", "--data",
           model / "corpus" / "en.calibration.jsonl", "--seq-len", 64, "--steps", 40, "--batch-size", 8, "--lr", 1e-2,
           "--out", "router-kd/", cwd=tmp_path)
    assert (tmp_path / "router-kd" / "config.json").exists()
