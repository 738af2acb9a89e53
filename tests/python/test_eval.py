"""moelab eval: perplexity against transformers with the Hugging Face sliding-window loop,
multiple-choice log-likelihoods and predictions against an lm-evaluation-harness-style
reference run with transformers, rank-count independence, the results store, bad inputs."""
import json
import math
import re
import pathlib
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from helpers import REPO, mixtral_with_tokenizer

TASKS = REPO / "configs" / "tasks"


@pytest.fixture(scope="module")
def model_dir(fixtures, tmp_path_factory):
    """The mixtral fixture plus a byte-level BPE trained here, small enough (<= 512 ids)
    for the fixture's vocabulary."""
    return mixtral_with_tokenizer(fixtures, tmp_path_factory.mktemp("eval") / "mixtral")[0]


@pytest.fixture(scope="module")
def hf(model_dir):
    # Inference only, for this module's tests; restored after them (other modules use autograd).
    previous = torch.is_grad_enabled()
    torch.set_grad_enabled(False)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    yield model, PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"))
    torch.set_grad_enabled(previous)


@pytest.fixture(scope="module")
def texts(fixtures, tmp_path_factory):
    """prose = a .txt document + a .jsonl of documents (one domain, two files); code.txt its own."""
    d = tmp_path_factory.mktemp("texts")
    lines = [l for l in (fixtures / "tokenizers" / "multilingual.txt").read_text().splitlines() if l.strip()]
    (d / "story.txt").write_text("\n".join(lines[:12]) + "\n")
    (d / "lines.jsonl").write_text("".join(json.dumps({"text": l}) + "\n" for l in lines[12:20]))
    (d / "code.txt").write_text("\n".join(lines[20:30]))
    return d


def read_jsonl(path):
    return [json.loads(l) for l in pathlib.Path(path).read_text().splitlines() if l.strip()]


def hf_document_nll(model, ids, max_length, stride, guide_count):
    """The loop of the transformers guide "Perplexity of fixed-length models" on one document.
    guide_count: weight each window's mean loss as the guide does (valid labels - 1); else by the
    number of labels the loss really averaged over (the two agree when stride == max_length)."""
    ids = torch.tensor([ids])
    seq_len = ids.size(1)
    nll_sum, n_tokens, prev_end_loc = 0.0, 0, 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length, seq_len)
        trg_len = end_loc - prev_end_loc
        input_ids = ids[:, begin_loc:end_loc]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        num = (target_ids != -100).sum().item() - 1 if guide_count else (target_ids[:, 1:] != -100).sum().item()
        if num > 0:
            loss = model(input_ids, labels=target_ids).loss
            nll_sum += float(loss) * num
            n_tokens += num
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    return nll_sum, n_tokens


def documents(path):
    if path.suffix == ".jsonl":
        return [j["text"] for j in read_jsonl(path)]
    return [path.read_text()]


@pytest.mark.parametrize("max_length,stride", [(40, 40), (48, 16)])
def test_perplexity_equals_transformers_sliding_window(max_length, stride, model_dir, hf, texts, moelab, tmp_path):
    model, tok = hf
    res = tmp_path / "results.jsonl"
    moelab("eval", model_dir, "--data", f"prose:{texts / 'story.txt'}", f"--data=prose={texts / 'lines.jsonl'}",
           "--data", texts / "code.txt", "--max-length", max_length, "--stride", stride, "--batch-size", 3,
           "--results", res, "--per-item", tmp_path / "docs.jsonl")
    records = {r["task"]: r for r in read_jsonl(res)}
    assert sorted(records) == ["code", "prose"]
    want = {}
    for domain, files in {"prose": ["story.txt", "lines.jsonl"], "code": ["code.txt"]}.items():
        nll, n, nbytes = 0.0, 0, 0
        for f in files:
            for doc in documents(texts / f):
                # The guide's own count where it is right, the true count where it is not.
                d_nll, d_n = hf_document_nll(model, tok(doc)["input_ids"], max_length, stride,
                                             guide_count=(stride == max_length))
                nll, n, nbytes = nll + d_nll, n + d_n, nbytes + len(doc.encode("utf-8"))
        want[domain] = (nll, n, nbytes)
    for domain, (nll, n, nbytes) in want.items():
        r = records[domain]
        assert r["kind"] == "perplexity" and r["n_tokens"] == n and r["details"]["n_bytes"] == nbytes
        assert r["settings"]["max_length"] == max_length and r["settings"]["stride"] == stride
        assert r["metrics"]["perplexity"] == pytest.approx(math.exp(nll / n), rel=1e-4)
        assert r["metrics"]["bits_per_byte"] == pytest.approx(nll / math.log(2) / nbytes, rel=1e-4)
    prose_files = records["prose"]["details"]["files"]
    assert [pathlib.Path(f["path"]).name for f in prose_files] == ["story.txt", "lines.jsonl"]
    assert prose_files[1]["n_documents"] == 8
    docs = read_jsonl(tmp_path / "docs.jsonl")
    assert len(docs) == 1 + 8 + 1 and sum(d["nll"] for d in docs if d["task"] == "prose") == pytest.approx(
        want["prose"][0], rel=1e-4)


def task_format(task):
    yaml_path = task.with_suffix(".yaml")
    fmt = {"query_field": "query", "choices_field": "choices", "gold_field": "gold", "prompt_template": None,
           "target_delimiter": " ", "fewshot_delimiter": "\n\n", "description": ""}
    if yaml_path.exists():
        import yaml
        fmt.update(yaml.safe_load(yaml_path.read_text()))
    return fmt


def query_of(item, fmt):
    return fmt["prompt_template"].format(**item) if fmt["prompt_template"] else item[fmt["query_field"]]


def lm_eval_loglik(model, tok, context, continuation, max_length):
    """HFLM._encode_pair + _loglikelihood_tokens of lm-evaluation-harness, for one request."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tok.encode(context + continuation)
    ctx = tok.encode(context)
    cont = whole[len(ctx):]
    inp = (ctx + cont)[-(max_length + 1):][:-1]
    logp = torch.log_softmax(model(torch.tensor([inp])).logits[0].float(), dim=-1)[len(inp) - len(cont):]
    return float(logp.gather(1, torch.tensor(cont)[:, None]).sum()), len(cont)


def argmax(values):
    return max(range(len(values)), key=lambda i: (values[i], -i))  # first maximum, as numpy


def lm_eval_rolling_nll(model, ids, prefix, max_length):
    """lm-eval's loglikelihood_rolling on one document, with lm-eval's own window functions and
    its HF backend's scoring (input = (context + continuation)[:-1], the continuation's
    log-probabilities from the last positions)."""
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
    nll = 0.0
    for ctx, cont in map(make_disjoint_window, get_rolling_token_windows(ids, prefix, max_length, 1)):
        inp = torch.tensor([(ctx + cont)[-(max_length + 1):][:-1]])
        logprobs = torch.log_softmax(model(inp).logits[0].float(), dim=-1)[-len(cont):]
        nll -= float(logprobs[torch.arange(len(cont)), torch.tensor(cont)].sum())
    return nll


@pytest.mark.parametrize("max_length", [16, 7])
def test_lm_eval_rolling_windows_equal_lm_evals_own_rule(max_length, model_dir, hf, texts, moelab, tmp_path):
    r"""--windows lm-eval: every token scored (the first after the prefix token), disjoint
    windows, the last shifted back to a full context; word and byte perplexity as lm-eval
    aggregates them (weighted by words = len(re.split(r"\s+", doc)) and UTF-8 bytes)."""
    model, tok = hf
    prefix = json.loads((model_dir / "config.json").read_text())["bos_token_id"]
    res = tmp_path / "results.jsonl"
    moelab("eval", model_dir, "--data", f"prose:{texts / 'story.txt'}", f"--data=prose={texts / 'lines.jsonl'}",
           "--windows", "lm-eval", "--max-length", max_length, "--batch-size", 3, "--results", res,
           "--per-item", tmp_path / "docs.jsonl")
    nll, n, nbytes, words, per_doc = 0.0, 0, 0, 0, []
    for f in ("story.txt", "lines.jsonl"):
        for doc in documents(texts / f):
            ids = tok(doc, add_special_tokens=False)["input_ids"]
            d = lm_eval_rolling_nll(model, ids, prefix, max_length)
            per_doc.append(d)
            nll, n = nll + d, n + len(ids)
            nbytes, words = nbytes + len(doc.encode("utf-8")), words + len(re.split(r"\s+", doc))
    assert max(len(tok(d)["input_ids"]) for d in documents(texts / "story.txt")) > 3 * max_length  # several windows
    r = read_jsonl(res)[0]
    assert r["n_tokens"] == n and r["settings"]["windows"] == "lm-eval" and "stride" not in r["settings"]
    assert r["metrics"]["perplexity"] == pytest.approx(math.exp(nll / n), rel=1e-5)
    assert r["metrics"]["bits_per_byte"] == pytest.approx(nll / math.log(2) / nbytes, rel=1e-5)
    assert r["metrics"]["byte_perplexity"] == pytest.approx(math.exp(nll / nbytes), rel=1e-5)
    assert r["metrics"]["word_perplexity"] == pytest.approx(math.exp(nll / words), rel=1e-5)
    got = [d["nll"] for d in read_jsonl(tmp_path / "docs.jsonl")]
    assert got == pytest.approx(per_doc, rel=1e-5, abs=1e-4)
    # the guide's rule on the same text scores fewer tokens (never a document's first)
    moelab("eval", model_dir, "--data", texts / "story.txt", "--max-length", max_length, "--results", tmp_path / "g.jsonl")
    assert read_jsonl(tmp_path / "g.jsonl")[0]["n_tokens"] < len(tok(documents(texts / "story.txt")[0])["input_ids"])
    # and the options that mean nothing together are refused
    bad = moelab("eval", model_dir, "--data", texts / "story.txt", "--windows", "lm-eval", "--stride", 4, check=False)
    assert bad.returncode == 2 and "--stride" in bad.stderr


def test_default_max_length_is_the_models_context_as_in_lm_eval(model_dir, texts, moelab, tmp_path):
    """lm-eval's HF backend takes max_position_embeddings (moelab once capped it at 2048)."""
    long_ctx = tmp_path / "long"
    shutil.copytree(model_dir, long_ctx)
    cfg = json.loads((long_ctx / "config.json").read_text())
    cfg["max_position_embeddings"] = 3000
    (long_ctx / "config.json").write_text(json.dumps(cfg))
    moelab("eval", long_ctx, "--data", texts / "story.txt", "--windows", "lm-eval", "--results", tmp_path / "r.jsonl")
    assert read_jsonl(tmp_path / "r.jsonl")[0]["settings"]["max_length"] == 3000


@pytest.mark.parametrize("task,shots", [("tiny_arith", 0), ("tiny_arith", 3), ("tiny_words", 2)])
def test_multiple_choice_equals_an_lm_eval_style_reference(task, shots, model_dir, hf, moelab, tmp_path):
    model, tok = hf
    path = TASKS / f"{task}.jsonl"
    max_length = 96  # short enough that 3-shot contexts are cut from the left
    moelab("eval", model_dir, "--task", path, "--num-fewshot", shots, "--fewshot-seed", 7, "--max-length", max_length,
           "--per-item", tmp_path / "items.jsonl", "--results", tmp_path / "r.jsonl")
    items, fmt = read_jsonl(path), task_format(path)
    got = read_jsonl(tmp_path / "items.jsonl")
    assert [g["item"] for g in got] == list(range(len(items)))
    acc = {"acc": [], "acc_norm": [], "acc_bytes": []}
    for g, item in zip(got, items):
        assert len(set(g["fewshot"])) == shots and g["item"] not in g["fewshot"]
        answer = [x[fmt["choices_field"]][x[fmt["gold_field"]]] for x in items]
        context = fmt["description"] + "".join(
            query_of(items[s], fmt) + fmt["target_delimiter"] + answer[s] + fmt["fewshot_delimiter"]
            for s in g["fewshot"]) + query_of(item, fmt)
        choices, gold = item[fmt["choices_field"]], item[fmt["gold_field"]]
        ref = [lm_eval_loglik(model, tok, context, fmt["target_delimiter"] + c, max_length) for c in choices]
        lls = [ll for ll, _ in ref]
        assert g["n_tokens"] == [n for _, n in ref]
        assert g["loglik"] == pytest.approx(lls, rel=1e-4, abs=1e-4)
        preds = {"acc": argmax(lls), "acc_norm": argmax([ll / len(c) for ll, c in zip(lls, choices)]),
                 "acc_bytes": argmax([ll / len(c.encode()) for ll, c in zip(lls, choices)])}
        assert (g["gold"], g["pred"], g["pred_norm"], g["pred_bytes"]) == (
            gold, preds["acc"], preds["acc_norm"], preds["acc_bytes"])
        for k, p in preds.items():
            acc[k].append(float(p == gold))
    [rec] = read_jsonl(tmp_path / "r.jsonl")
    assert rec["task"] == task and rec["kind"] == "multiple_choice" and rec["n_items"] == len(items)
    assert rec["settings"]["num_fewshot"] == shots and rec["settings"]["fewshot_seed"] == 7
    for k, v in acc.items():
        assert rec["metrics"][k] == pytest.approx(sum(v) / len(v), abs=1e-12)


def test_first_n_shots_are_lm_evals_first_n_sampler(model_dir, moelab, tmp_path):
    """fewshot_sampler: first_n gives the shots lm-eval's FirstNSampler gives (the pool's first k
    in order, the item left out), from the task itself and from a fewshot_file of exactly k."""
    from lm_eval.api.samplers import FirstNSampler
    items = read_jsonl(TASKS / "tiny_arith.jsonl")
    (tmp_path / "t.jsonl").write_text((TASKS / "tiny_arith.jsonl").read_text())
    (tmp_path / "t.yaml").write_text("fewshot_sampler: first_n\n")
    moelab("eval", model_dir, "--task", tmp_path / "t.jsonl", "--num-fewshot", 3, "--per-item", tmp_path / "i.jsonl")
    sampler = FirstNSampler(df=items)
    for g in read_jsonl(tmp_path / "i.jsonl"):
        want = sampler.sample(3, eval_doc=items[g["item"]])
        assert g["fewshot"] == [next(j for j, x in enumerate(items) if x is w) for w in want]
    # a separate pool of exactly k: every item gets all of it, in file order (not reordered)
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps(x) + "\n" for x in items[:3]))
    (tmp_path / "t.yaml").write_text("fewshot_sampler: first_n\nfewshot_file: pool.jsonl\n")
    moelab("eval", model_dir, "--task", tmp_path / "t.jsonl", "--num-fewshot", 3, "--per-item", tmp_path / "i.jsonl",
           "--overwrite")
    assert all(g["fewshot"] == [0, 1, 2] for g in read_jsonl(tmp_path / "i.jsonl"))
    (tmp_path / "t.yaml").write_text("fewshot_sampler: balanced\n")
    bad = moelab("eval", model_dir, "--task", tmp_path / "t.jsonl", check=False)
    assert bad.returncode == 2 and "t.yaml" in bad.stderr and "fewshot_sampler" in bad.stderr


def test_two_ranks_give_the_results_of_one(model_dir, texts, moelab, tmp_path):
    args = ["eval", model_dir, "--data", texts / "story.txt", "--data", texts / "lines.jsonl", "--max-length", 32,
            "--stride", 8, "--task", TASKS / "tiny_arith.jsonl", "--num-fewshot", 2, "--batch-size", 2,
            "--efficiency", "--bench-seq-len", 16, "--bench-repeats", 1]
    for p in (1, 2):
        moelab("--ranks", p, *args, "--results", tmp_path / f"r{p}.jsonl", "--per-item", tmp_path / f"i{p}.jsonl")
    r1, r2 = read_jsonl(tmp_path / "r1.jsonl"), read_jsonl(tmp_path / "r2.jsonl")
    assert [r["task"] for r in r1] == [r["task"] for r in r2] == ["story", "lines", "tiny_arith", "efficiency"]
    assert [r["world_size"] for r in r1 + r2] == [1] * 4 + [2] * 4
    for a, b in zip(r1, r2):
        assert (a["n_items"], a["n_tokens"]) == (b["n_items"], b["n_tokens"]) or a["kind"] == "efficiency"
        for name, v in a["metrics"].items():
            if name in ("tokens_per_second", "peak_rss_bytes", "peak_rss_bytes_all_ranks"):  # measured
                continue
            assert b["metrics"][name] == pytest.approx(v, rel=1e-6), f"{a['task']} {name}"
    i1, i2 = read_jsonl(tmp_path / "i1.jsonl"), read_jsonl(tmp_path / "i2.jsonl")
    for a, b in zip(i1, i2):
        if a["kind"] == "multiple_choice":
            assert {k: a[k] for k in ("fewshot", "pred", "pred_norm", "pred_bytes", "n_tokens")} == {
                k: b[k] for k in ("fewshot", "pred", "pred_norm", "pred_bytes", "n_tokens")}
            assert b["loglik"] == pytest.approx(a["loglik"], rel=1e-6)
        else:
            assert b["nll"] == pytest.approx(a["nll"], rel=1e-6)


def test_efficiency_figures_and_the_results_store(model_dir, hf, moelab, tmp_path):
    model, _ = hf
    res = tmp_path / "results.jsonl"
    for _ in range(2):  # appending keeps earlier records
        moelab("eval", model_dir, "--efficiency", "--bench-seq-len", 16, "--bench-repeats", 1, "--results", res)
    recs = read_jsonl(res)
    assert len(recs) == 2 and recs[0]["timestamp"] <= recs[1]["timestamp"]
    r = recs[1]
    for field in ("format", "model", "task", "kind", "metrics", "n_items", "n_tokens", "settings", "details",
                  "moelab_version", "world_size", "timestamp"):
        assert field in r, field
    cfg = model.config
    m = r["metrics"]
    assert m["total_params"] == sum(p.numel() for p in model.parameters())
    assert m["expert_flops_per_token"] == cfg.num_hidden_layers * 2 * 3 * cfg.hidden_size * cfg.intermediate_size \
        * cfg.num_experts_per_tok
    expert = 3 * cfg.hidden_size * cfg.intermediate_size
    assert m["active_params_per_token"] == m["total_params"] - cfg.num_hidden_layers * expert * (
        cfg.num_local_experts - cfg.num_experts_per_tok)
    assert m["tokens_per_second"] > 0 and m["peak_rss_bytes"] > 10 * 2**20 and r["n_tokens"] == 16
    assert not list(tmp_path.glob("*.tmp-*"))


def test_bad_inputs_are_one_line_errors_and_write_nothing(model_dir, texts, moelab, tmp_path):
    res, items = tmp_path / "results.jsonl", tmp_path / "items.jsonl"

    def err(*args):
        proc = moelab("eval", model_dir, *args, "--results", res, "--per-item", items, check=False)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().count("\n") == 0, proc.stderr
        assert not res.exists() and not items.exists()
        return proc.stderr

    good = '{"query": "1 + 1 =", "choices": ["2", "3"], "gold": 0}\n'
    missing = tmp_path / "missing.jsonl"
    missing.write_text(good + '{"query": "2 + 2 =", "gold": 0}\n')
    msg = err("--task", missing)
    assert "missing.jsonl" in msg and "line 2" in msg and '"choices"' in msg
    out_of_range = tmp_path / "range.jsonl"
    out_of_range.write_text(good * 2 + '{"query": "2 + 2 =", "choices": ["4", "5"], "gold": 2}\n')
    msg = err("--task", out_of_range)
    assert "range.jsonl" in msg and "line 3" in msg and '"gold"' in msg and "out of range" in msg
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    msg = err("--data", empty)
    assert "empty.txt" in msg and "empty" in msg
    # A bad file among good ones: still nothing evaluated, nothing written.
    msg = err("--data", texts / "story.txt", "--task", TASKS / "tiny_arith.jsonl", "--task", missing)
    assert "missing.jsonl" in msg
    assert "--num-fewshot" in err("--task", TASKS / "tiny_arith.jsonl", "--num-fewshot", 20)
    # lm-eval's Jinja placeholders are refused, not rendered as literal braces (tiny_words
    # silently fell from 0.35 to 0.25 with "Which word is {{question}}?")
    jinja = tmp_path / "jinja.jsonl"
    jinja.write_text((TASKS / "tiny_words.jsonl").read_text())
    fmt = (TASKS / "tiny_words.yaml").read_text().replace("{question}", "{{ question }}")
    (tmp_path / "jinja.yaml").write_text(fmt)
    msg = err("--task", jinja)
    assert "jinja.yaml" in msg and "prompt_template" in msg and "{{ question }}" in msg and "{question}" in msg
    (tmp_path / "jinja.yaml").write_text(fmt.replace("{{ question }}", "{{question}}"))
    assert "{{question}}" in err("--task", jinja)
    # literal braces around non-field text stay allowed
    (tmp_path / "jinja.yaml").write_text(fmt.replace("{{ question }}", "{question} {{}}"))
    ok = moelab("eval", model_dir, "--task", jinja, "--results", res)
    assert ok.returncode == 0 and res.exists()
