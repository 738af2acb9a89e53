"""The 2026 criteria (AIMER, MAN, MSAN), the unified family Family-aA-pP-bB-v scored from
the power_sums statistics, score --agreement and REAM-style merging, checked against
independent references: per-(token, expert) records hooked from transformers (float64),
weights read by transformers, and plain Python loops."""
import functools
import json
import math
import time

import h5py
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

import helpers
from helpers import DEFAULT_MODEL, REPO, assert_transformers_matches_moelab, calibrate
from helpers import tau_b as kendall_tau_b

SEQ_LEN = 24
token_file = functools.partial(helpers.token_file, n=8, seed=5, seq_len=SEQ_LEN)  # random windows of 24


def text_ids(path, n=8):
    """Windows of real text (the default model's English calibration split), tokenized here."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(DEFAULT_MODEL / "tokenizer.json"))
    docs = [json.loads(line)["text"] for line in (DEFAULT_MODEL / "corpus" / "en.calibration.jsonl").open()]
    ids = [i for d in docs[:60] for i in tok.encode(d).ids]
    seqs = [ids[i * SEQ_LEN:(i + 1) * SEQ_LEN] for i in range(n)]
    path.write_text(json.dumps({"input_ids": seqs}))
    return path


MODELS = {"mixtral": lambda fx: fx / "models" / "mixtral", "debian-moe": lambda fx: DEFAULT_MODEL}


def model_and_data(name, fixtures, tmp_path):
    model = MODELS[name](fixtures)
    data = text_ids(tmp_path / "cal.json") if name == "debian-moe" else token_file(tmp_path / "cal.json")
    return model, data


@torch.no_grad()
def routed_records(model_dir, data):
    """Per MoE layer: lists over routed (token, expert) pairs of (expert, g, ||a||, ||f||),
    recomputed in float64 from the inputs transformers feeds each MoE block."""
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
                a = torch.nn.functional.silu(h[:F]) * h[F:]
                recs.append((e, float(top_w[t, j]), float(a.norm()), float((a @ down[e].T).norm())))
        out[idx] = (E, recs)
    return out


def family_ref(E, recs, a, p, b, v):
    """S_j = N_j^-b * sum over routed tokens of g^a ||v||^p (0 for an expert with no token)."""
    s, n = [0.0] * E, [0] * E
    for e, g, an, fn in recs:
        s[e] += g ** a * (an if v == "act" else fn) ** p
        n[e] += 1
    return [s[j] / n[j] ** b if n[j] else 0.0 for j in range(E)]


def calibrate_float64(moelab, model, data, out, *extra):
    """helpers.calibrate in float64 on windows of this file's SEQ_LEN; returns the statistics file."""
    calibrate(moelab, model, data, out, *extra, seq_len=SEQ_LEN, options=("--dtype", "float64"))
    return out


def score(moelab, *args):
    out = args[-1]
    moelab("score", *args[:-1], "--out", out)
    return json.loads(out.read_text())["criteria"]


MEMBERS = [(0, 0, 0, "act"), (1, 0, 0, "act"), (0, 1, 0, "act"), (0, 1, 1, "act"), (0, 2, 1, "act"),
           (1, 1, 1, "out"), (2, 1, 0.5, "out"), (1, 2, 1, "act"), (2, 2, 2, "out"), (0, 1, -1, "out")]


def member_name(a, p, b, v):
    fmt = lambda x: f"{x:g}"
    return f"Family-a{fmt(a)}-p{fmt(p)}-b{fmt(b)}" + (f"-{v}" if p else "")


@pytest.mark.parametrize("name", ["mixtral", "debian-moe"])
def test_man_msan_and_family_members_equal_sums_over_transformers_routed_tokens(name, fixtures, moelab, tmp_path):
    model, data = model_and_data(name, fixtures, tmp_path)
    stats = calibrate_float64(moelab, model, data, tmp_path / "s.h5")
    names = ["MAN", "MSAN"] + [member_name(*m) for m in MEMBERS]
    got = score(moelab, "--stats", stats, "--criteria", ",".join(names), tmp_path / "scores.json")
    ref = routed_records(model, data)
    assert sorted(int(l) for l in got["MAN"]["layers"]) == sorted(ref)
    for layer, (E, recs) in ref.items():
        want = {"MAN": family_ref(E, recs, 0, 1, 1, "act"), "MSAN": family_ref(E, recs, 0, 2, 1, "act")}
        for m in MEMBERS:
            want[member_name(*m)] = family_ref(E, recs, *m)
        for crit, w in want.items():
            np.testing.assert_allclose(got[crit]["layers"][str(layer)], w, rtol=1e-6, atol=1e-300,
                                       err_msg=f"{name} layer {layer} {crit}")
    # The stored sums themselves: [e, v, a, p] over the default exponents 0, 1, 2.
    with h5py.File(stats) as f:
        assert list(f.attrs["power_exponents"]) == [0.0, 1.0, 2.0]
        for layer, (E, recs) in ref.items():
            sums = f[f"layer_{layer:03d}/power_sum_EVXX"][:]
            assert sums.shape == (E, 2, 3, 3)
            for v, vname in enumerate(["act", "out"]):
                for ia in range(3):
                    for ip in range(3):
                        w = family_ref(E, recs, ia, ip, 0, vname)
                        np.testing.assert_allclose(sums[:, v, ia, ip], w, rtol=1e-6)


@pytest.mark.parametrize("name", ["mixtral", "debian-moe"])
def test_aimer_equals_abs_mean_over_rms_of_transformers_weights(name, fixtures, moelab, tmp_path):
    model, _ = model_and_data(name, fixtures, tmp_path)
    crits = ["AIMER", "AIMER-gate", "AIMER-up", "AIMER-down", "AIMER-mean"]
    got = score(moelab, "--model", model, "--criteria", ",".join(crits), tmp_path / "scores.json")
    hf = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float64)
    ratio = lambda ws: (sum(float(w.detach().abs().sum()) for w in ws) / sum(w.numel() for w in ws)) / math.sqrt(
        sum(float((w.detach() ** 2).sum()) for w in ws) / sum(w.numel() for w in ws))
    layers = 0
    for idx, layer in enumerate(hf.model.layers):
        if not hasattr(layer.mlp, "experts"):
            continue
        layers += 1
        gu, down = layer.mlp.experts.gate_up_proj, layer.mlp.experts.down_proj
        F = gu.shape[1] // 2
        want = {c: [] for c in crits}
        for e in range(gu.shape[0]):
            g, u, d = gu[e, :F], gu[e, F:], down[e]
            want["AIMER"].append(ratio([g, u, d]))
            want["AIMER-gate"].append(ratio([g]))
            want["AIMER-up"].append(ratio([u]))
            want["AIMER-down"].append(ratio([d]))
            want["AIMER-mean"].append((ratio([g]) + ratio([u]) + ratio([d])) / 3)
        for c in crits:
            np.testing.assert_allclose(got[c]["layers"][str(idx)], want[c], rtol=1e-9, err_msg=f"{name} {idx} {c}")
        # Values as the paper describes them: in (0, 1], near sqrt(2/pi) for Gaussian-like weights.
        assert all(0 < s <= 1 for s in want["AIMER"])
    assert layers >= 2


def test_named_members_equal_their_stand_alone_criteria_and_are_listed(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "qwen3"
    stats = tmp_path / "s.h5"
    moelab("calibrate", model, "--data", token_file(tmp_path / "cal.json"), "--seq-len", SEQ_LEN,
           "--num-samples", 0, "--out", stats)
    named = {"EUF": "Family-a0-p0-b0", "SoftFrequency": "Family-a1-p0-b0", "EAN": "Family-a0-p1-b0-act",
             "MAN": "Family-a0-p1-b1-act", "MSAN": "Family-a0-p2-b1-act", "REAP": "Family-a1-p1-b1-out"}
    got = score(moelab, "--stats", stats, "--criteria", ",".join(list(named) + list(named.values())),
                tmp_path / "scores.json")
    for crit, member in named.items():
        for layer, vals in got[crit]["layers"].items():
            np.testing.assert_allclose(got[member]["layers"][layer], vals, rtol=1e-12, err_msg=f"{crit} vs {member}")
    listing = moelab("score", "--list").stdout
    for crit, member in named.items():
        assert f"{crit} = {member}" in listing
    for c in ("AIMER ", "MAN ", "MSAN ", "Family-a<A>-p<P>-b<B>-<act|out>", "AIMER-<gate|up|down|mean>"):
        assert c in listing


def test_twenty_members_score_from_the_statistics_file_alone_in_seconds(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "mixtral"
    stats = tmp_path / "s.h5"
    moelab("calibrate", model, "--data", token_file(tmp_path / "cal.json"), "--seq-len", SEQ_LEN,
           "--num-samples", 0, "--out", stats)
    members = [member_name(a, p, b, v) for a in (0, 1, 2) for p in (1, 2) for b in (0, 1) for v in ("act", "out")]
    members = members[:20]
    assert len(set(members)) == 20
    # No model at all: nothing but the HDF5 file is read (no weights, no forward pass).
    start = time.perf_counter()
    got = score(moelab, "--stats", stats, "--criteria", ",".join(members), tmp_path / "scores.json")
    assert time.perf_counter() - start < 30  # seconds, not a benchmark: bench/RESULTS.md has the timing
    assert sorted(got) == sorted(members)
    # With the model given for the match check, its weights are still not read.
    proc = moelab("score", "--stats", stats, "--model", model, "--criteria", ",".join(members), "--out",
                  tmp_path / "with_model.json")
    assert "weights read: no" in proc.stderr + proc.stdout
    assert json.loads((tmp_path / "with_model.json").read_text())["criteria"] == got
    proc = moelab("score", "--stats", stats, "--model", model, "--criteria", "AIMER", "--out", tmp_path / "w.json")
    assert "weights read: yes" in proc.stderr + proc.stdout


def test_family_scores_do_not_depend_on_the_rank_count(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "mixtral"
    data = token_file(tmp_path / "cal.json", n=10)
    names = ",".join(member_name(*m) for m in MEMBERS)
    for ranks in (1, 2):
        moelab("--ranks", ranks, "calibrate", model, "--data", data, "--seq-len", SEQ_LEN, "--num-samples", 0,
               "--criteria", names, "--out", tmp_path / f"p{ranks}.h5")
    s1 = score(moelab, "--stats", tmp_path / "p1.h5", "--criteria", names, tmp_path / "p1.json")
    s2 = score(moelab, "--stats", tmp_path / "p2.h5", "--criteria", names, tmp_path / "p2.json")
    with h5py.File(tmp_path / "p2.h5") as f:
        assert f.attrs["world_size"] == 2
    for crit, body in s1.items():
        for layer, vals in body["layers"].items():
            np.testing.assert_allclose(s2[crit]["layers"][layer], vals, rtol=1e-5, err_msg=f"{crit} layer {layer}")


def test_exponents_outside_the_stored_set_say_what_is_stored_and_how_to_collect_them(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "mixtral"
    data = token_file(tmp_path / "cal.json")
    stats = tmp_path / "s.h5"
    moelab("calibrate", model, "--data", data, "--seq-len", SEQ_LEN, "--num-samples", 0, "--out", stats)
    proc = moelab("score", "--stats", stats, "--criteria", "Family-a3-p1-b1-out", "--out", tmp_path / "x.json",
                  check=False)
    assert proc.returncode != 0
    err = [l for l in proc.stderr.splitlines() if not l.startswith("[")]  # less the log lines
    assert len(err) == 1 and err[0].startswith("error: criterion Family-a3-p1-b1-out: a = 3 is not stored")
    assert "{0,1,2}" in err[0]
    assert "--power-exponents 0,1,2,3" in err[0]
    assert not (tmp_path / "x.json").exists()
    # Following the advice works; naming the member at calibration adds its exponents by itself.
    for extra, out in ((["--power-exponents", "0,1,2,3"], "s3.h5"), (["--criteria", "Family-a3-p1-b1-out"], "s4.h5")):
        moelab("calibrate", model, "--data", data, "--seq-len", SEQ_LEN, "--num-samples", 0, *extra,
               "--out", tmp_path / out)
        got = score(moelab, "--stats", tmp_path / out, "--criteria", "Family-a3-p1-b1-out,Family-a1-p1-b1-out",
                    tmp_path / f"{out}.json")
        with h5py.File(tmp_path / out) as f:
            assert 3.0 in list(f.attrs["power_exponents"])
        assert got["Family-a3-p1-b1-out"]["layers"]
    for bad, words in (("Family-a-1-p1-b1-act", "must be >= 0"), ("Family-a1-p1-b1-mid", "not a family member"),
                       ("Family-a1-p1", "not a family member"), ("AIMER-left", "did you mean")):
        proc = moelab("score", "--stats", stats, "--criteria", bad, "--out", tmp_path / "y.json", check=False)
        assert proc.returncode != 0 and words in proc.stderr, proc.stderr
        assert len([l for l in proc.stderr.splitlines() if not l.startswith("[")]) == 1
    for bad in ("0,1,1", "-1", "0,1,2,3,4,5,6,7,8"):
        proc = moelab("calibrate", model, "--data", data, "--seq-len", SEQ_LEN, "--power-exponents", bad, "--out",
                      tmp_path / "z.h5", check=False)
        assert proc.returncode != 0 and "--power-exponents" in proc.stderr
        assert not (tmp_path / "z.h5").exists()


def dropped(scores, maximum, ratio):
    key = [-s for s in scores] if maximum else list(scores)
    order = sorted(range(len(key)), key=lambda e: (key[e], e))
    return set(order[:round(ratio * len(key))])


def test_agreement_table_matches_a_hand_computation(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "mixtral"
    stats = tmp_path / "s.h5"
    moelab("calibrate", model, "--data", token_file(tmp_path / "cal.json"), "--seq-len", SEQ_LEN,
           "--num-samples", 0, "--out", stats)
    choices = ["Min-EAN", "Min-REAP", "Max-AIMER", "Min-MAN"]
    proc = moelab("score", "--agreement", stats, *choices, "--model", model, "--ratio", 0.25, "--out",
                  tmp_path / "agree.csv")
    assert "Kendall tau-b" in proc.stdout and "top-r overlap" in proc.stdout
    scores = score(moelab, "--stats", stats, "--model", model, "--criteria", "EAN,REAP,AIMER,MAN", tmp_path / "s.json")
    lines = (tmp_path / "agree.csv").read_text().splitlines()
    assert lines[0] == "layer,criterion_a,criterion_b,kendall_tau,top_r_overlap,dropped"
    rows = {(r[0], r[1], r[2]): r for r in (line.split(",") for line in lines[1:])}
    layers = sorted(scores["EAN"]["layers"], key=int)
    assert len(rows) == 6 * (len(layers) + 1)
    for i, a in enumerate(choices):
        for b in choices[i + 1:]:
            taus, common, total = [], 0, 0
            for layer in layers:
                sa, sb = scores[a[4:]]["layers"][layer], scores[b[4:]]["layers"][layer]
                ka = [-s for s in sa] if a.startswith("Max") else sa
                kb = [-s for s in sb] if b.startswith("Max") else sb
                tau = kendall_tau_b(ka, kb)
                da, db = dropped(sa, a.startswith("Max"), 0.25), dropped(sb, b.startswith("Max"), 0.25)
                row = rows[(layer, a, b)]
                assert float(row[3]) == pytest.approx(tau, abs=1e-5), (layer, a, b)
                assert float(row[4]) == pytest.approx(len(da & db) / len(da), abs=1e-9)
                assert int(row[5]) == len(da) == 2
                taus.append(tau)
                common += len(da & db)
                total += len(da)
            overall = rows[("all", a, b)]
            assert float(overall[3]) == pytest.approx(sum(taus) / len(taus), abs=1e-5)
            assert float(overall[4]) == pytest.approx(common / total, abs=1e-9)
    # The same criterion in both directions disagrees completely.
    proc = moelab("score", "--agreement", stats, "Min-EAN", "Max-EAN", "--out", tmp_path / "opp.csv")
    last = (tmp_path / "opp.csv").read_text().splitlines()[-1].split(",")
    assert last[0] == "all" and float(last[3]) == pytest.approx(-1.0) and float(last[4]) == 0.0
    for bad, words in ((["Min-EAN"], "at least two"), (["Min-EAN", "Min-EAN"], "named twice"),
                       (["Min-EAN", "Min-REAP", "--ratio", "1.5"], "--ratio"),
                       (["Min-EAN", "Max-AIMER"], "needs the model's weights")):
        proc = moelab("score", "--agreement", stats, *bad, check=False)
        assert proc.returncode != 0 and words in proc.stderr, proc.stderr


def ream_reference(stats, ratio):
    """The documented REAM reading, from the HDF5 datasets: REAP saliency, centroids,
    nearest centroid by cosine of mean outputs, saliency weights."""
    out = {}
    with h5py.File(stats) as f:
        for g in f:
            n = f[g]["tokens_E"][:]
            sal = np.where(n > 0, f[g]["gate_out_norm_sum_E"][:] / np.maximum(n, 1), 0.0)
            mu = f[g]["dense_out_sum_ED"][:]
            E = len(n)
            keep = E - round(ratio * E)
            order = sorted(range(E), key=lambda e: (-sal[e], e))
            cents = order[:keep]
            groups = {c: [c] for c in cents}
            for e in order[keep:]:
                cos = [float(mu[e] @ mu[c] / (np.linalg.norm(mu[e]) * np.linalg.norm(mu[c]))) for c in cents]
                groups[cents[int(np.argmax(cos))]].append(e)
            layer = {}
            for c, members in groups.items():
                members = sorted(members)
                total = sum(sal[m] for m in members)
                layer[tuple(members)] = ([sal[m] / total for m in members], c)
            out[int(f[g].attrs["layer"])] = layer
    return out


def test_ream_merging_groups_and_weights_by_reap_and_loads_in_transformers(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "mixtral"
    data = token_file(tmp_path / "cal.json")
    stats = tmp_path / "s.h5"
    moelab("calibrate", model, "--data", data, "--seq-len", SEQ_LEN, "--num-samples", 0, "--criteria", "REAP",
           "--collect", "dense_outputs", "--out", stats)
    out = tmp_path / "merged"
    moelab("merge", model, "--stats", stats, "--ratio", 0.5, "--method", "ream", "--plan-out", tmp_path / "plan.json",
           "--out", out)
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["method"] == "ream" and plan["weighting"] == "reap_saliency"
    ref = ream_reference(stats, 0.5)
    for layer, body in plan["layers"].items():
        want = ref[int(layer)]
        assert sorted(tuple(g) for g in body["groups"]) == sorted(want)
        for g, w, d in zip(body["groups"], body["weights"], body["dominant"]):
            np.testing.assert_allclose(w, want[tuple(g)][0], rtol=1e-9)
            assert d == want[tuple(g)][1]
    # The merged model: transformers' logits equal moelab's.
    assert_transformers_matches_moelab(moelab, fixtures, "mixtral", out, tmp_path)
    # The plan applies again to the original model; a bad method is refused.
    moelab("merge", model, "--plan", tmp_path / "plan.json", "--out", tmp_path / "again")
    proc = moelab("merge", model, "--stats", stats, "--method", "kmeans", "--out", tmp_path / "bad", check=False)
    assert proc.returncode != 0 and "--method" in proc.stderr
    # HC-SMoE stays the default.
    moelab("merge", model, "--stats", stats, "--ratio", 0.5, "--plan-out", tmp_path / "hc.json")
    assert json.loads((tmp_path / "hc.json").read_text())["method"] == "hc-smoe"


def test_the_newer_criteria_sweep_plans_with_one_calibration_for_every_data_criterion(moelab):
    g = json.loads(moelab("sweep", "plan", REPO / "configs" / "newer_criteria.yaml", "--json", "-").stdout)
    prunes = [j for j in g["jobs"] if j["kind"] == "prune"]
    labels = {j["tags"]["criterion"] for j in prunes}
    assert labels == {"Max-AIMER", "Min-AIMER", "Min-MAN", "Min-MSAN", "Min-Family-a2-p1-b0.5-out", "Min-REAP",
                      "Min-EAN", "Min-Random"}
    assert len(prunes) == 8 * 2
    cal = [j for j in g["jobs"] if j["kind"] == "calibrate"]
    assert len(cal) == 1  # MAN, MSAN, the family member, REAP and EAN share one pass
    crit = cal[0]["args"][cal[0]["args"].index("--criteria") + 1].split(",")
    assert "Family-a2-p1-b0.5-out" in crit and "AIMER" not in crit
