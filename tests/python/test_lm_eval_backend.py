"""moelab as an lm-evaluation-harness model type (runner/lm_eval_backend/moelab_lm.py):
the same requests, scored by `--model moelab` and by lm-eval's own Hugging Face backend
(HFLM, fp32) on the shipped model, give the same log-likelihoods, greedy flags and metrics;
tasks come from lm-eval YAMLs over local JSON files (nothing is downloaded)."""
import json
import math
import os
import subprocess
import sys

import pytest

from helpers import DEFAULT_MODEL as MODEL, REPO, en_documents, en_items, write_tasks

sys.path.insert(0, str(REPO / "runner" / "lm_eval_backend"))

lm_eval = pytest.importorskip("lm_eval")
from lm_eval.api.instance import Instance  # noqa: E402

import moelab_lm  # noqa: E402,F401  (registers --model moelab)

MAX_LENGTH = 96  # short enough that long contexts and documents are cut / windowed


@pytest.fixture(scope="module")
def hflm():
    from lm_eval.models.huggingface import HFLM
    return HFLM(pretrained=str(MODEL), dtype="float32", device="cpu", batch_size=4, max_length=MAX_LENGTH)


@pytest.fixture(scope="module")
def mlm(moelab_bin):
    return moelab_lm.MoelabLM(pretrained=str(MODEL), moelab=moelab_bin, max_length=MAX_LENGTH, batch_size=4)


def instances(kind, args_list):
    return [Instance(request_type=kind, doc={}, arguments=args, idx=i) for i, args in enumerate(args_list)]


def test_loglikelihood_requests_equal_lm_evals_hf_backend(hflm, mlm):
    pairs = [(it["query"], c) for it in en_items(4) for c in it["choices"]]
    pairs += [("", "The quick brown fox"),                        # no context: the prefix token
              ("Question: what is 2 + 2?\nAnswer: ", "4"),         # trailing space moves to the answer
              ("Zürich, Kraków and Москва are", " cities"),        # multi-byte text
              (" ".join(["word"] * 150), " again")]                # longer than max_length: cut from the left
    want = hflm.loglikelihood(instances("loglikelihood", pairs))
    got = mlm.loglikelihood(instances("loglikelihood", pairs))
    assert len(got) == len(pairs)
    for (ctx, cont), (w_ll, w_greedy), (g_ll, g_greedy) in zip(pairs, want, got):
        assert abs(w_ll - g_ll) <= 1e-4 * max(1.0, abs(w_ll)), (ctx[-40:], cont, w_ll, g_ll)
        assert w_greedy == g_greedy, (ctx[-40:], cont)


@pytest.mark.parametrize("add_bos_token", [None, False])
def test_loglikelihood_rolling_equals_lm_evals_hf_backend(add_bos_token, moelab_bin):
    """HFLM's default (add_bos_token unset) keeps the tokenizer's own start token after the
    prefix token (debian-moe's tokenizer adds one); add_bos_token=False drops it."""
    from lm_eval.models.huggingface import HFLM
    hflm = HFLM(pretrained=str(MODEL), dtype="float32", device="cpu", batch_size=4, max_length=MAX_LENGTH,
                add_bos_token=add_bos_token)
    mlm = moelab_lm.MoelabLM(pretrained=str(MODEL), moelab=moelab_bin, max_length=MAX_LENGTH, batch_size=4,
                             add_bos_token=add_bos_token)
    docs = en_documents(5)
    want = hflm.loglikelihood_rolling(instances("loglikelihood_rolling", [(d,) for d in docs]))
    got = mlm.loglikelihood_rolling(instances("loglikelihood_rolling", [(d,) for d in docs[:2] + [""] + docs[2:]]))
    assert got.pop(2) == 0.0  # an empty document scores nothing and keeps its place
    assert len(got) == len(want)
    for w, g in zip(want, got):
        assert abs(w - g) <= 1e-4 * max(1.0, abs(w)), (w, g)


GEN_REQUESTS = [
    ("The Debian project", {"until": ["."], "max_gen_toks": 24}),
    ("Question: what does apt do?\nAnswer:", {"until": ["\n", "Question:"], "max_gen_toks": 40}),
    ("A package is", {"max_gen_toks": 16}),                                   # the EOS text only
    (" ".join(["word"] * 120) + " The kernel", {"until": ["\n\n"], "max_gen_toks": 20}),  # cut from the left
    ("Zürich and Kraków", {"until": [","], "do_sample": False, "max_gen_toks": 12}),
]


def test_generate_until_equals_lm_evals_hf_backend(moelab_bin):
    """Greedy continuations, stop strings (with the tokenizer's EOS text added), max_gen_toks and
    the left cut to max_length - max_gen_toks as HFLM.generate_until (batch size 1: HFLM's
    batches pad on the left, which moves positions' rounding, not the rule)."""
    from lm_eval.models.huggingface import HFLM
    hflm = HFLM(pretrained=str(MODEL), dtype="float32", device="cpu", batch_size=1, max_length=MAX_LENGTH)
    want = hflm.generate_until(instances("generate_until", GEN_REQUESTS))
    for ranks in (1, 2):
        mlm = moelab_lm.MoelabLM(pretrained=str(MODEL), moelab=moelab_bin, max_length=MAX_LENGTH, batch_size=2,
                                 ranks=ranks)
        got = mlm.generate_until(instances("generate_until", GEN_REQUESTS))
        assert got == want, (ranks, got, want)
    assert any(w.strip() for w in want)  # the model does write something


def test_a_generate_until_task_through_simple_evaluate_gives_the_hf_backends_outputs(moelab_bin, tmp_path):
    """An lm-eval task YAML of output type generate_until (the shape of GSM8K's: a prompt, stop
    strings, max_gen_toks, exact_match): every sample's filtered response and the metric are
    those of the HF backend (batch size 1 there, see above)."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM  # noqa: F401  (registers --model hf)
    from lm_eval.tasks import TaskManager
    items = tmp_path / "gen.jsonl"
    rows = [{"question": it["query"].strip(), "answer": it["choices"][it["gold"]].strip()} for it in en_items(8)]
    items.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "gen.yaml").write_text(f"""task: moelab_test_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {items}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n", "."]
  max_gen_toks: 24
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
""")
    outs = {}
    for model, args, batch in (("hf", f"pretrained={MODEL},dtype=float32,max_length={MAX_LENGTH}", 1),
                               ("moelab", f"pretrained={MODEL},moelab={moelab_bin},max_length={MAX_LENGTH}", 4)):
        outs[model] = simple_evaluate(model=model, model_args=args, tasks=["moelab_test_gen"],
                                      task_manager=TaskManager(include_path=str(tmp_path)), num_fewshot=0,
                                      batch_size=batch, device="cpu", log_samples=True)
    resp = {m: [s["filtered_resps"] for s in sorted(o["samples"]["moelab_test_gen"], key=lambda s: s["doc_id"])]
            for m, o in outs.items()}
    assert resp["moelab"] == resp["hf"] and len(resp["hf"]) == len(rows)
    assert any(r[0].strip() for r in resp["hf"])  # something was generated
    assert (outs["moelab"]["results"]["moelab_test_gen"]["exact_match,none"]
            == outs["hf"]["results"]["moelab_test_gen"]["exact_match,none"])


def test_sampling_is_refused_with_a_message(mlm):
    with pytest.raises(NotImplementedError, match="greedy"):
        mlm.generate_until(instances("generate_until", [("2 + 2 =", {"until": ["\n"], "do_sample": True,
                                                                        "temperature": 0.7})]))


def test_simple_evaluate_gives_the_hf_backends_metrics(moelab_bin, tmp_path):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM  # noqa: F401  (registers --model hf)
    from lm_eval.tasks import TaskManager
    tasks = write_tasks(tmp_path)
    results = {}
    for model, args in (("hf", f"pretrained={MODEL},dtype=float32,max_length={MAX_LENGTH}"),
                        ("moelab", f"pretrained={MODEL},moelab={moelab_bin},max_length={MAX_LENGTH}")):
        out = simple_evaluate(model=model, model_args=args, tasks=["moelab_test_mc", "moelab_test_ppl"],
                              task_manager=TaskManager(include_path=str(tasks)), num_fewshot=0, batch_size=4,
                              device="cpu")
        results[model] = out["results"]
    mc_hf, mc_ml = results["hf"]["moelab_test_mc"], results["moelab"]["moelab_test_mc"]
    assert mc_ml["acc,none"] == mc_hf["acc,none"] and mc_ml["acc_norm,none"] == mc_hf["acc_norm,none"]
    assert 0.5 < mc_ml["acc,none"] <= 1.0  # the unpruned model knows English (chance is 0.25)
    ppl_hf, ppl_ml = results["hf"]["moelab_test_ppl"], results["moelab"]["moelab_test_ppl"]
    for metric in ("word_perplexity,none", "byte_perplexity,none", "bits_per_byte,none"):
        assert math.isclose(ppl_ml[metric], ppl_hf[metric], rel_tol=1e-4), (metric, ppl_ml[metric], ppl_hf[metric])


def test_the_lm_eval_command_line_runs_with_model_moelab(moelab_bin, tmp_path):
    """runner/lm_eval_backend/run_lm_eval.py: lm-eval's own CLI with `--model moelab`, 2 ranks."""
    tasks = write_tasks(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "runner" / "lm_eval_backend" / "run_lm_eval.py"),
                           "--model", "moelab", "--model_args",
                           f"pretrained={MODEL},moelab={moelab_bin},ranks=2,max_length={MAX_LENGTH}",
                           "--tasks", "moelab_test_mc", "--include_path", str(tasks), "--output_path", str(out),
                           "--batch_size", "4"], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, HF_DATASETS_OFFLINE="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = list(out.rglob("results*.json"))
    assert files, proc.stdout[-2000:]
    res = json.loads(files[0].read_text())["results"]["moelab_test_mc"]
    assert 0.5 < res["acc,none"] <= 1.0


def test_the_lm_eval_command_line_still_runs_lm_evals_own_model_types(tmp_path):
    """run_lm_eval.py registers moelab; lm-eval's own `--model hf` must still load (lm-eval
    imports its models only while its registry is empty) and score as lm-eval does."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM  # noqa: F401  (registers --model hf)
    from lm_eval.tasks import TaskManager
    tasks = write_tasks(tmp_path)
    out = tmp_path / "out"
    args = f"pretrained={MODEL},dtype=float32,max_length={MAX_LENGTH}"
    proc = subprocess.run([sys.executable, str(REPO / "runner" / "lm_eval_backend" / "run_lm_eval.py"),
                           "--model", "hf", "--model_args", args, "--tasks", "moelab_test_mc", "--include_path",
                           str(tasks), "--output_path", str(out), "--batch_size", "4", "--device", "cpu"],
                          capture_output=True, text=True, timeout=600, env=dict(os.environ, HF_DATASETS_OFFLINE="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(next(out.rglob("results*.json")).read_text())["results"]["moelab_test_mc"]
    want = simple_evaluate(model="hf", model_args=args, tasks=["moelab_test_mc"],
                           task_manager=TaskManager(include_path=str(tasks)), num_fewshot=0, batch_size=4,
                           device="cpu")["results"]["moelab_test_mc"]
    assert res["acc,none"] == want["acc,none"] and res["acc_norm,none"] == want["acc_norm,none"]


def test_bad_model_arguments_are_one_clear_error(moelab_bin, tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        moelab_lm.MoelabLM(pretrained=str(tmp_path), moelab=moelab_bin)
    with pytest.raises(ValueError, match="binary"):
        moelab_lm.MoelabLM(pretrained=str(MODEL), moelab=str(tmp_path / "no-such-moelab"))


def test_a_bad_requests_file_is_one_line_naming_the_line_and_field(moelab, tmp_path):
    bad = tmp_path / "r.jsonl"
    bad.write_text('{"context": "a", "continuation": " b"}\n{"context": "a"}\n')
    proc = moelab("eval", MODEL, "--requests", bad, "--per-item", tmp_path / "o.jsonl", check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert f"{bad}: line 2" in proc.stderr and '"continuation"' in proc.stderr
    assert not (tmp_path / "o.jsonl").exists()
    proc = moelab("eval", MODEL, "--requests", bad, check=False)
    assert proc.returncode == 2 and "--per-item" in proc.stderr


CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    """The shipped model with a chat template that starts with the BOS text (as Llama's,
    Mistral's and most chat templates do); weights linked, not copied."""
    d = tmp_path_factory.mktemp("chat_model")
    for f in MODEL.iterdir():
        if f.is_file():
            (d / f.name).symlink_to(f)
    cfg = json.loads((MODEL / "tokenizer_config.json").read_text())
    cfg["chat_template"] = CHAT_TEMPLATE
    (d / "tokenizer_config.json").unlink()
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    return d


def test_strings_that_start_with_the_bos_text_get_no_second_bos_as_in_lm_eval(chat_model, moelab_bin):
    """lm-eval's has_bos_prefix: HFLM encodes a string that already starts with the prefix
    token's text ('<|endoftext|>' here) without the tokenizer's special tokens - what every
    chat-templated prompt does. Log-likelihoods, rolling documents and generations agree."""
    from lm_eval.models.huggingface import HFLM
    hflm = HFLM(pretrained=str(chat_model), dtype="float32", device="cpu", batch_size=1, max_length=MAX_LENGTH)
    mlm = moelab_lm.MoelabLM(pretrained=str(chat_model), moelab=moelab_bin, max_length=MAX_LENGTH, batch_size=2)
    bos = "<|endoftext|>"
    it = en_items(1)[0]
    pairs = [(bos + "<|user|>\nThe Debian project is", " a free operating system"), (bos + it["query"], it["choices"][0]),
             ("The Debian project is", " free")]
    want = hflm.loglikelihood(instances("loglikelihood", pairs))
    got = mlm.loglikelihood(instances("loglikelihood", pairs))
    for (w, wg), (g, gg) in zip(want, got):
        assert abs(w - g) <= 1e-4 * max(1.0, abs(w)) and wg == gg, (w, g)
    docs = [bos + en_documents(1)[0], en_documents(2)[1]]
    want = hflm.loglikelihood_rolling(instances("loglikelihood_rolling", [(d,) for d in docs]))
    got = mlm.loglikelihood_rolling(instances("loglikelihood_rolling", [(d,) for d in docs]))
    for w, g in zip(want, got):
        assert abs(w - g) <= 1e-4 * max(1.0, abs(w)), (w, g)
    gen = [(bos + "<|user|>\nWhat is Debian?\n<|assistant|>\n", {"until": ["\n"], "max_gen_toks": 16})]
    assert mlm.generate_until(instances("generate_until", gen)) == hflm.generate_until(instances("generate_until", gen))


def test_apply_chat_template_gives_the_hf_backends_prompts_and_scores(chat_model, moelab_bin, tmp_path):
    """`--apply_chat_template` (simple_evaluate's apply_chat_template=True): moelab renders the
    model's chat template as HFLM does; every sample's prompt and log-likelihoods, and the
    metrics, equal the HF backend's."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM  # noqa: F401  (registers --model hf)
    from lm_eval.tasks import TaskManager
    tasks = write_tasks(tmp_path)
    outs = {}
    for model, args in (("hf", f"pretrained={chat_model},dtype=float32,max_length={MAX_LENGTH}"),
                        ("moelab", f"pretrained={chat_model},moelab={moelab_bin},max_length={MAX_LENGTH}")):
        outs[model] = simple_evaluate(model=model, model_args=args, tasks=["moelab_test_mc"], limit=8,
                                      task_manager=TaskManager(include_path=str(tasks)), num_fewshot=0, batch_size=4,
                                      device="cpu", apply_chat_template=True, log_samples=True)
    samples = {m: sorted(o["samples"]["moelab_test_mc"], key=lambda s: s["doc_id"]) for m, o in outs.items()}
    for h, m in zip(samples["hf"], samples["moelab"]):
        assert h["arguments"] == m["arguments"]  # the same chat-templated prompts
        first = h["arguments"][0]
        context = first[0] if isinstance(first, (list, tuple)) else first["arg_0"]
        assert context.startswith("<|endoftext|><|user|>\n"), context[:40]
        for (wl, _), (gl, _) in zip([r[0] for r in h["resps"]], [r[0] for r in m["resps"]]):
            assert abs(float(wl) - float(gl)) <= 1e-4 * max(1.0, abs(float(wl))), (wl, gl)
    for metric in ("acc,none", "acc_norm,none"):
        assert outs["moelab"]["results"]["moelab_test_mc"][metric] == outs["hf"]["results"]["moelab_test_mc"][metric]


def test_k_shot_on_a_pruned_model_gives_the_hf_backends_scores_under_two_ranks(moelab, moelab_bin, tmp_path):
    """lm-eval draws the shots (its seeded sampler) for both backends; on a model with half
    of every layer's experts dropped, 3-shot log-likelihoods of every sample and the metrics
    equal the HF backend's, with moelab on 2 ranks."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM  # noqa: F401  (registers --model hf)
    from lm_eval.tasks import TaskManager
    pruned = tmp_path / "pruned"
    moelab("prune", MODEL, *sum([["--drop", f"{layer}:1,3,4,6"] for layer in range(4)], []), "--out", pruned)
    (tmp_path / "tasks").mkdir()
    tasks = write_tasks(tmp_path / "tasks")
    outs = {}
    for model, args in (("hf", f"pretrained={pruned},dtype=float32,max_length={MAX_LENGTH}"),
                        ("moelab", f"pretrained={pruned},moelab={moelab_bin},ranks=2,max_length={MAX_LENGTH}")):
        outs[model] = simple_evaluate(model=model, model_args=args, tasks=["moelab_test_mc"], limit=10,
                                      task_manager=TaskManager(include_path=str(tasks)), num_fewshot=3, batch_size=4,
                                      device="cpu", log_samples=True)
    samples = {m: sorted(o["samples"]["moelab_test_mc"], key=lambda s: s["doc_id"]) for m, o in outs.items()}
    for h, m in zip(samples["hf"], samples["moelab"]):
        assert h["arguments"] == m["arguments"]  # the same 3 shots in the same order
        for (wl, _), (gl, _) in zip([r[0] for r in h["resps"]], [r[0] for r in m["resps"]]):
            assert abs(float(wl) - float(gl)) <= 1e-4 * max(1.0, abs(float(wl))), (wl, gl)
    for metric in ("acc,none", "acc_norm,none"):
        assert outs["moelab"]["results"]["moelab_test_mc"][metric] == outs["hf"]["results"]["moelab_test_mc"][metric]
    assert outs["hf"]["n-shot"]["moelab_test_mc"] == 3


def test_a_gsm8k_style_regex_task_and_rolling_perplexity_on_a_pruned_model_equal_hf_under_two_ranks(
        moelab, moelab_bin, tmp_path):
    """A generate_until task in GSM8K's shape (stop strings, max_gen_toks, a regex filter taking
    the answer out of the text, exact_match), 0-shot and 2-shot, and a rolling-perplexity task,
    on a model with half of every layer's experts dropped: moelab on 2 ranks (its generation
    over the KV cache, several sequences per batch) gives the HF backend's prompts, filtered
    answers, per-document log-likelihoods (within 1e-4) and metrics."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM  # noqa: F401  (registers --model hf)
    from lm_eval.tasks import TaskManager
    pruned = tmp_path / "pruned"
    moelab("prune", MODEL, *sum([["--drop", f"{layer}:0,2,5,7"] for layer in range(4)], []), "--out", pruned)
    (tmp_path / "tasks").mkdir()
    tasks = write_tasks(tmp_path / "tasks")
    gen = tmp_path / "gen.jsonl"
    gen.write_text("".join(json.dumps({"question": it["query"], "answer": it["choices"][it["gold"]].split()[0]},
                                      ensure_ascii=False) + "\n" for it in en_items(8)), encoding="utf-8")
    (tasks / "gen.yaml").write_text(f"""task: moelab_test_gsm8k_like
dataset_path: json
dataset_kwargs:
  data_files:
    test: {gen}
test_split: test
fewshot_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
target_delimiter: ""
generation_kwargs:
  until: ["\\n\\n", "Question:"]
  max_gen_toks: 24
  do_sample: false
filter_list:
  - name: first_word
    filter:
      - function: regex
        regex_pattern: "\\\\S+"
        group_select: 0
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
""")
    for shots, task in ((0, "moelab_test_gsm8k_like"), (2, "moelab_test_gsm8k_like"), (0, "moelab_test_ppl")):
        outs = {}
        for model, args, batch in (("hf", f"pretrained={pruned},dtype=float32,max_length={MAX_LENGTH}", 1),
                                   ("moelab", f"pretrained={pruned},moelab={moelab_bin},ranks=2,"
                                              f"max_length={MAX_LENGTH}", 4)):
            outs[model] = simple_evaluate(model=model, model_args=args, tasks=[task], num_fewshot=shots,
                                          task_manager=TaskManager(include_path=str(tasks)), batch_size=batch,
                                          device="cpu", log_samples=True)
        samples = {m: sorted(o["samples"][task], key=lambda s: s["doc_id"]) for m, o in outs.items()}
        assert len(samples["hf"]) == len(samples["moelab"]) > 0
        for h, m in zip(samples["hf"], samples["moelab"]):
            assert h["arguments"] == m["arguments"], (shots, task)  # the same prompts (and shots)
            if task == "moelab_test_ppl":
                assert abs(float(h["resps"][0][0]) - float(m["resps"][0][0])) <= 1e-4 * abs(float(h["resps"][0][0]))
            else:
                assert h["resps"] == m["resps"] and h["filtered_resps"] == m["filtered_resps"], (shots, h, m)
        for metric, want in outs["hf"]["results"][task].items():
            got = outs["moelab"]["results"][task][metric]
            assert got == want if isinstance(want, str) else got == pytest.approx(want, rel=1e-6), (task, metric)
        if task != "moelab_test_ppl":
            assert any(s["filtered_resps"][0].strip() for s in samples["hf"])  # answers were generated
            assert outs["moelab"]["n-shot"][task] == shots
