"""The embedded default model (models/debian-moe, recipe configs/default_model/): its shipped
files match the corpus manifest, transformers loads it with moelab's held-out perplexity, it
has learned (bits per byte well below a unigram baseline on every domain), its experts
specialise (per-domain usage distributions differ), and domain-specific pruning works as the
literature says (experts chosen with a domain's own calibration data hurt that domain less).
Fast: slices of the shipped held-out splits, one rank. Thresholds: models/debian-moe/README.md."""
import hashlib
import itertools
import json
import math

import numpy as np
import pytest

from helpers import DEFAULT_MODEL as MODEL, REPO

HELDOUT = MODEL / "corpus"
DOMAINS = ["code", "cs", "de", "en", "es", "it", "pl", "pt", "ru", "zh"]
SLICE = 24                 # documents per domain taken from the start of a held-out split
UNIGRAM_RATIO = 0.8        # the model's bits/byte <= this x the unigram baseline's, every domain
JS_THRESHOLD = 0.15        # mean (over layers and pairs) Jensen-Shannon divergence of usage, bits
JS_WITHIN = 0.05           # a domain's calibration vs test usage: at most this (noise level)
SPEC_DOMAINS = ["code", "es", "ru", "zh"]   # one per script or kind: code, Latin, Cyrillic, Chinese


def docs(domain, split, n=SLICE):
    with open(HELDOUT / f"{domain}.{split}.jsonl", encoding="utf-8") as f:
        return [json.loads(l)["text"] for l in f if l.strip()][:n]


def write_jsonl(path, texts):
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return path


def perplexity_records(results):
    return {r["task"]: r for r in map(json.loads, results.read_text().split("\n")[:-1]) if r["kind"] == "perplexity"}


def js(p, q):
    m = (p + q) / 2

    def kl(a, b):
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / b[nz])).sum())

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("default_model")


@pytest.fixture(scope="module")
def test_slices(work):
    return {d: write_jsonl(work / f"{d}.test.jsonl", docs(d, "test")) for d in DOMAINS}


def calibrate_default_model(moelab_bin, data, out):
    """EUF statistics of the shipped model on `data` (windows of 256); moelab_bin, not the
    function-scoped `moelab` fixture, so that the module-scoped `calibrated` can use it."""
    import subprocess
    p = subprocess.run([moelab_bin, "calibrate", str(MODEL), "--data", str(data), "--seq-len", "256",
                        "--num-samples", "0", "--criteria", "EUF", "--out", str(out)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return out


def usage(stats):
    """[layer, expert]: the share of routed (token, expert) pairs."""
    import h5py
    with h5py.File(stats) as f:
        layers = sorted(k for k in f if k.startswith("layer_"))
        u = np.stack([f[f"{l}/tokens_E"][:].astype(np.float64) for l in layers])
    return u / u.sum(axis=1, keepdims=True)


def mean_js(u, v):
    return float(np.mean([js(u[l], v[l]) for l in range(len(u))]))


@pytest.fixture(scope="module")
def calibrated(work, moelab_bin):
    """Per SPEC_DOMAINS domain: calibration statistics of a slice of its calibration split."""
    return {d: calibrate_default_model(moelab_bin, write_jsonl(work / f"{d}.cal.jsonl", docs(d, "calibration", 48)),
                                       work / f"{d}.h5")
            for d in SPEC_DOMAINS}


def test_shipped_held_out_splits_match_the_manifest():
    manifest = json.loads((HELDOUT / "manifest.json").read_text())
    shipped = {n: i for n, i in manifest["files"].items() if i["split"] != "train"}
    assert sorted({i["domain"] for i in shipped.values()}) == DOMAINS
    for name, info in shipped.items():
        data = (HELDOUT / name).read_bytes()
        assert len(data) == info["file_bytes"], name
        assert hashlib.sha256(data).hexdigest() == info["sha256"], name
        assert sum(1 for l in data.decode().split("\n") if l.strip()) == info["documents"], name
    for d in DOMAINS:   # the task files exist and are items of the held-out test split
        items = [json.loads(l) for l in (REPO / "configs/tasks" / f"debian_moe_{d}.jsonl").read_text().split("\n")
                 if l.strip()]
        test = (HELDOUT / f"{d}.test.jsonl").read_text(encoding="utf-8")
        assert len(items) >= 30
        for it in items[:5]:
            assert json.dumps(it["query"] + it["choices"][it["gold"]], ensure_ascii=False)[1:-1] in test


def test_the_shipped_model_is_small():
    total = sum(f.stat().st_size for f in MODEL.rglob("*") if f.is_file())   # model, corpus, metrics
    assert total <= 25 * 10**6, total
    cfg = json.loads((MODEL / "config.json").read_text())
    assert cfg["model_type"] == "mixtral" and cfg["num_local_experts"] == 8 and cfg["num_experts_per_tok"] == 2


def test_transformers_gives_moelabs_held_out_perplexity(work, moelab):
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    picked = {}
    for d in ["en", "ru", "zh", "code"]:   # documents of one window (<= 256 tokens)
        picked[d] = [t for t in docs(d, "test", 40) if len(tok.encode(t).ids) <= 256][:6]
    args = [a for d, t in picked.items() for a in ("--data", f"{d}:{write_jsonl(work / f'ppl-{d}.jsonl', t)}")]
    res = work / "ppl.results.jsonl"
    moelab("eval", MODEL, *args, "--max-length", 256, "--results", res)
    recs = perplexity_records(res)
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
    hf_tok = AutoTokenizer.from_pretrained(MODEL)
    for d, texts in picked.items():
        nll, n = 0.0, 0
        for t in texts:
            ids = hf_tok(t, return_tensors="pt").input_ids
            assert ids[0, 0].item() == 0   # <|endoftext|> in front, as moelab's tokenizer does
            with torch.no_grad():
                logp = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
            nll -= logp.gather(1, ids[0, 1:, None]).sum().item()
            n += ids.shape[1] - 1
        r = recs[d]
        assert r["n_tokens"] == n
        assert math.isclose(r["metrics"]["nll_sum"], nll, rel_tol=2e-5), (d, r["metrics"]["nll_sum"], nll)
        assert math.isclose(r["metrics"]["perplexity"], math.exp(nll / n), rel_tol=2e-5)


def test_bits_per_byte_are_well_below_a_unigram_baseline(work, moelab, test_slices):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    counts = np.array(json.loads((HELDOUT / "unigram_counts.json").read_text())["counts"], dtype=np.float64)
    logp = np.log2((counts + 1) / (counts.sum() + len(counts)))
    res = work / "bpb.results.jsonl"
    moelab("eval", MODEL, *[a for d, p in test_slices.items() for a in ("--data", f"{d}:{p}")],
           "--max-length", 256, "--results", res)
    recs = perplexity_records(res)
    for d in DOMAINS:
        texts = docs(d, "test")
        unigram = sum(-logp[e.ids].sum() for e in tok.encode_batch(texts, add_special_tokens=False)) / \
            sum(len(t.encode()) for t in texts)
        bpb = recs[d]["metrics"]["bits_per_byte"]
        assert bpb <= UNIGRAM_RATIO * unigram, (d, bpb, unigram)


def test_experts_specialise_by_domain(work, moelab_bin, calibrated, test_slices):
    """Per-domain expert usage differs between domains (mean JS over layers and pairs above
    JS_THRESHOLD, every pair above a third of it) far more than between two samples of one
    domain (its calibration and test slices: below JS_WITHIN)."""
    use = {d: usage(p) for d, p in calibrated.items()}
    pairs = {(a, b): mean_js(use[a], use[b]) for a, b in itertools.combinations(SPEC_DOMAINS, 2)}
    assert np.mean(list(pairs.values())) > JS_THRESHOLD, pairs
    assert min(pairs.values()) > JS_THRESHOLD / 3, pairs
    for d in SPEC_DOMAINS:
        within = mean_js(use[d], usage(calibrate_default_model(moelab_bin, test_slices[d], work / f"{d}.test.h5")))
        assert within < JS_WITHIN, (d, within)


def test_pruning_with_a_domains_own_data_hurts_it_least(work, moelab, calibrated, test_slices):
    """Min-EUF at 50%: the experts a domain uses least, per layer, are dropped. For every
    target domain T, the model pruned with T's calibration data has the lowest bits/byte on
    T's test slice among the models pruned with SPEC_DOMAINS' data."""
    bpb = {}
    for s, stats in calibrated.items():
        scores, pruned, res = work / f"{s}.scores.json", work / f"pruned-{s}", work / f"pruned-{s}.jsonl"
        moelab("score", "--stats", stats, "--model", MODEL, "--criteria", "EUF", "--out", scores)
        moelab("prune", MODEL, "--scores", scores, "--criterion", "EUF", "--direction", "min", "--ratio", 0.5,
               "--out", pruned)
        moelab("eval", pruned, *[a for d in SPEC_DOMAINS for a in ("--data", f"{d}:{test_slices[d]}")],
               "--max-length", 256, "--results", res)
        bpb[s] = {d: r["metrics"]["bits_per_byte"] for d, r in perplexity_records(res).items()}
    for t in SPEC_DOMAINS:
        own = bpb[t][t]
        for s in SPEC_DOMAINS:
            if s != t:
                assert own < bpb[s][t], (t, s, bpb)
