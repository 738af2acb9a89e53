"""MC-Suite inference-based criteria (ECC, EVTC, ETS, EAS, EAE): moelab calibrate -> HDF5
-> moelab score, checked against naive numpy/Python implementations written here from the
HDF5 datasets, plus hand-made statistics for ECC's ordering rule and the edge cases."""
import json
import math
import shutil

import h5py
import numpy as np
import pytest

from helpers import SEQ_LEN, calibrate

GROUPS = "usage,coactivation,token_ids,act_moments"
NAMES = ["ECC", "EVTC", "ETS", "EAS", "EAE"]


def numpy_token_file(path, n=12, vocab=512, seed=11):
    """Random windows from numpy's generator (not helpers.token_file's torch one: other ids)."""
    rng = np.random.default_rng(seed)
    path.write_text(json.dumps({"input_ids": rng.integers(1, vocab, size=(n, SEQ_LEN)).tolist()}))
    return path


def statistics_of(moelab, model, tmp_path):
    """The statistics file of a calibration (GROUPS) on numpy_token_file's windows."""
    data = numpy_token_file(tmp_path / "cal.json")
    out = tmp_path / "s.h5"
    calibrate(moelab, model, data, out, options=("--collect", GROUPS))
    return out


def score(moelab, stats, out):
    moelab("score", "--stats", stats, "--criteria", ",".join(NAMES), "--out", out)
    return json.loads(out.read_text())["criteria"]


# ---- naive references: plain Python loops over experts / pairs ---------------------------------

def ref_ecc(C, n):
    """The documented rule: pairs j<k with C>0, most co-activated first (ties: lower j, then
    lower k); the less used of the pair (fewer tokens, ties -> higher index) gets the next
    score if it has none; the rest follow by usage (fewer first, ties -> higher index first)."""
    E = len(n)
    pairs = [(int(C[j][k]), j, k) for j in range(E) for k in range(j + 1, E) if C[j][k] > 0]
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    scores = [None] * E
    nxt = 0
    for _, j, k in pairs:
        if n[j] < n[k]:
            drop = j
        elif n[k] < n[j]:
            drop = k
        else:
            drop = max(j, k)
        if scores[drop] is None:
            scores[drop] = nxt
            nxt += 1
    rest = [j for j in range(E) if scores[j] is None]
    rest.sort(key=lambda j: (n[j], -j))
    for j in rest:
        scores[j] = nxt
        nxt += 1
    return [float(s) for s in scores]


def token_sets(bitmap, vocab):
    bits = np.unpackbits(bitmap, axis=1, bitorder="little")[:, :vocab]
    return [set(int(v) for v in np.nonzero(row)[0]) for row in bits]


def ref_evtc(sets, vocab):
    return [len(s) / vocab for s in sets]


def ref_ets(sets):
    out = []
    for j, a in enumerate(sets):
        total = 0.0
        for k, b in enumerate(sets):
            if k == j:
                continue
            union = len(a | b)
            total += len(a & b) / union if union else 0.0
        out.append(total)
    return out


def ref_eas(act_sum, n):
    E, F = act_sum.shape
    means = [[act_sum[j][c] / n[j] if n[j] > 0 else 0.0 for c in range(F)] for j in range(E)]
    norms = [math.sqrt(sum(x * x for x in m)) for m in means]
    out = []
    for j in range(E):
        total = 0.0
        for k in range(E):
            if k == j or norms[j] == 0 or norms[k] == 0:
                continue
            total += sum(means[j][c] * means[k][c] for c in range(F)) / (norms[j] * norms[k])
        out.append(total)
    return out


def ref_eae(act_sum, act_sq_sum, n):
    E, F = act_sum.shape
    out = []
    for j in range(E):
        total = 0.0
        for c in range(F):
            if n[j] < 2:
                sd = 0.0
            else:
                mu = act_sum[j][c] / n[j]
                sd = math.sqrt(max(act_sq_sum[j][c] / n[j] - mu * mu, 0.0))
            total += math.log(max(sd, 1e-12))
        out.append(total)
    return out


def check_file(stats, got):
    with h5py.File(stats) as f:
        vocab = int(f.attrs["vocab_size"])
        layers = [int(x) for x in f.attrs["moe_layers"].decode().split(",")]
        assert sorted(int(x) for x in got["ECC"]["layers"]) == layers
        for layer in layers:
            g = f[f"layer_{layer:03d}"]
            n = [int(x) for x in g["tokens_E"][:]]
            C = g["coactivation_EE"][:].tolist()
            sets = token_sets(g["token_bitmap_EW"][:], vocab)
            act_sum, act_sq = g["act_sum_EF"][:], g["act_sq_sum_EF"][:]
            key = str(layer)
            assert got["ECC"]["layers"][key] == ref_ecc(C, n), f"ECC layer {layer}"
            assert sorted(got["ECC"]["layers"][key]) == [float(i) for i in range(len(n))]
            np.testing.assert_allclose(got["EVTC"]["layers"][key], ref_evtc(sets, vocab), rtol=1e-9, atol=0,
                                       err_msg=f"EVTC layer {layer}")
            np.testing.assert_allclose(got["ETS"]["layers"][key], ref_ets(sets), rtol=1e-9, atol=1e-12,
                                       err_msg=f"ETS layer {layer}")
            np.testing.assert_allclose(got["EAS"]["layers"][key], ref_eas(act_sum, n), rtol=1e-6, atol=1e-9,
                                       err_msg=f"EAS layer {layer}")
            np.testing.assert_allclose(got["EAE"]["layers"][key], ref_eae(act_sum, act_sq, n), rtol=1e-6, atol=0,
                                       err_msg=f"EAE layer {layer}")


@pytest.mark.parametrize("family", ["mixtral", "qwen3"])
def test_mc_suite_inference_criteria_follow_their_formulas(family, fixtures, moelab, tmp_path):
    stats = statistics_of(moelab, fixtures / "models" / family, tmp_path)
    got = score(moelab, stats, tmp_path / "scores.json")
    assert set(NAMES) <= set(got)
    for name in NAMES:
        assert got[name]["version"] >= 1
    check_file(stats, got)
    # Sanity of the data itself: the fixture's calibration set exercises non-trivial values.
    with h5py.File(stats) as f:
        g = f[f"layer_{int(f.attrs['moe_layers'].decode().split(',')[0]):03d}"]
        assert (g["tokens_E"][:] >= 2).sum() >= 2
        assert (g["coactivation_EE"][:] - np.diag(np.diag(g["coactivation_EE"][:]))).sum() > 0


def test_hand_made_statistics_ecc_rule_and_edge_cases(fixtures, moelab, tmp_path):
    """Statistics overwritten by hand in a real file: ECC's walk (usage ties, a skipped pair,
    never co-activated and unused experts), an unused and a single-token expert for EAS/EAE,
    and a vocabulary that is not a multiple of 8 (bits past it are ignored)."""
    stats = statistics_of(moelab, fixtures / "models" / "mixtral", tmp_path)
    hand = tmp_path / "hand.h5"
    shutil.copy(stats, hand)
    n = np.array([50, 40, 40, 30, 20, 10, 0, 1], dtype=np.int64)
    C = np.zeros((8, 8), dtype=np.int64)
    for (j, k), c in {(0, 1): 30, (2, 3): 30, (1, 2): 25, (0, 3): 20, (1, 3): 20, (4, 5): 5, (0, 7): 1}.items():
        C[j, k] = C[k, j] = c
    np.fill_diagonal(C, n)
    # Walk: (0,1)->1:0, (2,3)->3:1, (1,2) tie in usage->2:2, (0,3) and (1,3) skipped (3 scored),
    # (4,5)->5:3, (0,7)->7:4; then by usage 6 (0 tokens), 4 (20), 0 (50): 5, 6, 7.
    want_ecc = [7.0, 0.0, 2.0, 1.0, 6.0, 3.0, 5.0, 4.0]
    assert ref_ecc(C.tolist(), n.tolist()) == want_ecc
    vocab = 509
    with h5py.File(hand, "r+") as f:
        f.attrs.modify("vocab_size", np.int64(vocab))
        g = f["layer_000"]
        assert g["tokens_E"].shape == (8,)
        g["tokens_E"][...] = n
        g["coactivation_EE"][...] = C
        bm = g["token_bitmap_EW"][:]
        assert bm.shape[1] == 64
        bm[:, 63] |= 0b11100000  # ids 509..511: past the vocabulary
        bm[3, :] = 0
        bm[3, 63] = 0b11100000  # expert 3: only ids past the vocabulary -> an empty set
        g["token_bitmap_EW"][...] = bm
    got = score(moelab, hand, tmp_path / "hand.json")
    assert got["ECC"]["layers"]["0"] == want_ecc
    check_file(hand, got)
    l0 = {name: got[name]["layers"]["0"] for name in NAMES}
    with h5py.File(hand) as f:
        F = f["layer_000/act_sum_EF"].shape[1]
    assert l0["EVTC"][3] == 0.0
    assert l0["EAE"][6] == pytest.approx(F * math.log(1e-12), rel=1e-12)  # no token
    assert l0["EAE"][7] == pytest.approx(F * math.log(1e-12), rel=1e-12)  # one token: no spread
    assert min(l0["EAE"]) == pytest.approx(F * math.log(1e-12), rel=1e-12)
    # The unused expert's mean is zero: its cosines are 0, and it adds nothing to the others.
    assert l0["EAS"][6] == 0.0


def test_score_list_shows_the_mc_suite_inference_criteria(moelab):
    out = moelab("score", "--list").stdout
    names = [line.split()[0] for line in out.splitlines()[1:] if line.strip()]
    for name in NAMES:
        assert name in names, name
