"""moelab generate: greedy decoding over a KV cache equal to transformers' generate(do_sample=False)
token for token on the shipped model, under 1 and 2 ranks and several batch sizes (the cached
steps against the whole-sequence forward on every family: tests/unit/test_kv_cache.cpp); stop strings and lengths as documented;
bad requests refused in one line. (lm-eval's generate_until through it:
test_lm_eval_backend.py.)"""
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from helpers import DEFAULT_MODEL as MODEL

PROMPTS = ["The Debian project", "apt-get install", "Question: what is a package?\nAnswer:"]
NEW = 20


@pytest.fixture(scope="module")
def hf_continuations():
    tok = AutoTokenizer.from_pretrained(MODEL)
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
    out = []
    for p in PROMPTS:
        ids = tok(p, return_tensors="pt").input_ids
        with torch.no_grad():
            gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        new = gen[0, ids.shape[1]:].tolist()
        eos = model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos])
        cut = next((i for i, t in enumerate(new) if t in eos), len(new))
        out.append(new[:cut])
    return out


def write_requests(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# Batches of contexts of different lengths (padded, sequences leaving the batch's cache as
# they end), one batch on one rank while the other serves its experts, a batch per rank.
@pytest.mark.parametrize("ranks,batch", [(1, 8), (1, 2), (2, 8), (2, 1)])
def test_greedy_tokens_equal_transformers_generate(ranks, batch, hf_continuations, moelab, tmp_path):
    req = write_requests(tmp_path / "r.jsonl", [{"context": p, "max_gen_toks": NEW} for p in PROMPTS])
    out = tmp_path / "gen.jsonl"
    moelab(*(["--ranks", 2] if ranks == 2 else []), "generate", MODEL, "--requests", req, "--out", out,
           "--batch-size", batch)
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert [r["request"] for r in rows] == [0, 1, 2] and [r["line"] for r in rows] == [1, 2, 3]
    for row, want in zip(rows, hf_continuations):
        assert row["tokens"] == want
        assert row["stop"] == ("length" if len(want) == NEW else "eos")
    assert any(len(w) > 3 for w in hf_continuations)


def test_stop_strings_end_generation_and_cut_the_text(moelab, tmp_path):
    """The text is cut before the first stop string; generation stops on the token that
    completes it; a later request's own max_gen_toks wins over --max-new-tokens."""
    free = write_requests(tmp_path / "free.jsonl", [{"context": PROMPTS[0], "max_gen_toks": 40}])
    moelab("generate", MODEL, "--requests", free, "--out", tmp_path / "free.out")
    text = json.loads((tmp_path / "free.out").read_text())["text"]
    # Two characters of the free text whose first occurrence is past its start.
    cut = next(k for k in range(len(text) // 2, len(text) - 1) if text.find(text[k:k + 2]) == k)
    stop = text[cut:cut + 2]
    req = write_requests(tmp_path / "r.jsonl", [{"context": PROMPTS[0], "until": [stop], "max_gen_toks": 40},
                                                 {"context": PROMPTS[0]}])
    moelab("generate", MODEL, "--requests", req, "--out", tmp_path / "o.jsonl", "--max-new-tokens", 5)
    a, b = [json.loads(l) for l in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert a["stop"] == "until" and a["text"] == text[:cut] and stop not in a["text"]
    assert len(a["tokens"]) < 40
    assert b["stop"] in ("length", "eos") and len(b["tokens"]) <= 5


def test_text_prompts_print_prompt_and_continuation(moelab):
    proc = moelab("generate", MODEL, "--text", PROMPTS[0], "--max-new-tokens", 8)
    assert proc.stdout.startswith(PROMPTS[0]) and len(proc.stdout.strip()) > len(PROMPTS[0])


@pytest.mark.parametrize("line,field", [('{"context": 3}', '"context"'),
                                        ('{"context": "a", "max_gen_toks": 0}', '"max_gen_toks"'),
                                        ('{"context": "a", "until": [1]}', '"until"'),
                                        ("not json", "not valid JSON")])
def test_a_bad_request_is_one_line_naming_the_file_line_and_field(line, field, moelab, tmp_path):
    req = tmp_path / "r.jsonl"
    req.write_text('{"context": "fine"}\n' + line + "\n")
    out = tmp_path / "o.jsonl"
    proc = moelab("generate", MODEL, "--requests", req, "--out", out, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert f"{req}: line 2" in proc.stderr and field in proc.stderr
    assert not out.exists()
    proc = moelab("generate", MODEL, "--requests", req, check=False)
    assert proc.returncode == 2 and "--out" in proc.stderr


def test_a_key_value_cache_that_cannot_fit_is_refused_before_the_model_loads(moelab_bin, tmp_path):
    """The memory check counts the largest batch's cache: 2 x layers x B x kv heads x head_dim
    x (context + max_gen_toks) x 4 bytes on top of the weights; under MOELAB_MEMORY_LIMIT the
    same requests run with few new tokens and are refused, one line naming the cache, with
    many; --batch-size 1 halves the cache of two requests."""
    import re
    import subprocess
    from tokenizers import Tokenizer
    cfg = json.loads((MODEL / "config.json").read_text())
    tok = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    n_ctx = max(len(tok.encode(p).ids) for p in PROMPTS[:2])
    env = dict(__import__("os").environ, MOELAB_MEMORY_LIMIT="2G")

    def run(max_gen, batch):
        req = write_requests(tmp_path / "r.jsonl", [{"context": p, "max_gen_toks": max_gen} for p in PROMPTS[:2]])
        out = tmp_path / "o.jsonl"
        out.unlink(missing_ok=True)
        proc = subprocess.run([moelab_bin, "generate", str(MODEL), "--requests", str(req), "--out", str(out),
                               "--batch-size", str(batch)], capture_output=True, text=True, env=env, timeout=600)
        return proc, out

    proc, out = run(8, 8)
    assert proc.returncode == 0 and out.exists(), proc.stderr
    per_token = 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * cfg["head_dim"] * 4
    new = 4_000_000
    for batch, seqs in [(8, 2), (1, 1)]:
        proc, out = run(new, batch)
        assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
        m = re.search(r"key/value cache of (\d+) sequence\(s\), --batch-size: ([\d.]+) GiB", proc.stderr)
        assert m and int(m.group(1)) == seqs, proc.stderr
        want = per_token * seqs * (n_ctx + new) / 2**30
        assert abs(float(m.group(2)) - want) < 0.051, (proc.stderr, want)
        assert "moelab generate" in proc.stderr and not out.exists()
