"""moelab finetune: the loss goes down; step-1 gradients equal transformers' autograd and
do not depend on the rank count; a killed and resumed run ends with the same weights as an
uninterrupted one; SFT puts the loss on answers only; bad inputs are one-line errors."""
import functools
import json
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

import helpers
from helpers import SEQ_LEN, hf_logits, hf_model, input_error, mixtral_with_tokenizer, moelab_logits

ids_file = functools.partial(helpers.ids_file, n=6, seed=21)  # this file's training data; returns the ids


def losses(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_loss_decreases_and_the_result_loads_in_transformers(fixtures, moelab, tmp_path):
    model = fixtures / "models" / "mixtral"
    ids_file(tmp_path / "d.json")
    moelab("finetune", model, "--data", tmp_path / "d.json", "--seq-len", SEQ_LEN, "--steps", 8, "--batch-size", 6,
           "--micro-batch", 2, "--lr", 3e-3, "--warmup", 2, "--log-file", tmp_path / "log.jsonl", "--out",
           tmp_path / "tuned")
    curve = losses(tmp_path / "log.jsonl")
    assert [r["step"] for r in curve] == list(range(1, 9))
    assert curve[-1]["loss"] < 0.8 * curve[0]["loss"], [r["loss"] for r in curve]
    assert curve[0]["lr"] == pytest.approx(1.5e-3) and curve[-1]["lr"] == pytest.approx(0.0, abs=1e-12)
    ref = load_file(str(fixtures / "models" / "mixtral.ref.safetensors"))
    hf = hf_logits(hf_model(tmp_path / "tuned", trust_remote_code=False), ref)
    mine = moelab_logits(moelab, tmp_path / "tuned", ref, tmp_path)
    for a, b in zip(hf, mine):
        assert (a - b).abs().max().item() <= 1e-4


@torch.enable_grad()
def reference_gradients(model_dir, ids):
    """d(mean next-token NLL over the whole batch)/d(every weight), by transformers."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    logits = model(input_ids=ids).logits
    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    (-logp.gather(-1, ids[:, 1:, None]).sum() / ids[:, 1:].numel()).backward()
    return {n: p.grad for n, p in model.named_parameters()}


def close(got, want, what):
    scale = want.abs().max().item()
    assert scale > 0, what
    assert (got - want).abs().max().item() <= 1e-5 * scale, f"{what}: {(got - want).abs().max().item()} vs {scale}"


@pytest.mark.parametrize("family", ["mixtral", "qwen3"])
def test_step_one_gradients_equal_transformers_for_any_rank_count(family, fixtures, moelab, tmp_path):
    model = fixtures / "models" / family
    ids = ids_file(tmp_path / "d.json")
    common = ["finetune", model, "--data", tmp_path / "d.json", "--seq-len", SEQ_LEN, "--steps", 1, "--batch-size", 6,
              "--micro-batch", 2]
    moelab(*common, "--save-grads", tmp_path / "g1.safetensors", "--out", tmp_path / "o1")
    moelab("--ranks", 2, *common, "--save-grads", tmp_path / "g2.safetensors", "--out", tmp_path / "o2")
    g1, g2 = load_file(str(tmp_path / "g1.safetensors")), load_file(str(tmp_path / "g2.safetensors"))
    assert g1.keys() == g2.keys()
    for name in g1:
        close(g2[name], g1[name], f"{family} {name} P=2 vs P=1")
    ref = reference_gradients(model, ids)
    layers = [i for i in range(3) if f"layers.{i}.router" in g1]
    assert layers
    for i in layers:
        p = f"model.layers.{i}."
        close(g1[f"layers.{i}.experts.gate_up"], ref[p + "mlp.experts.gate_up_proj"], f"{family} experts {i}")
        close(g1[f"layers.{i}.experts.down"], ref[p + "mlp.experts.down_proj"], f"{family} experts down {i}")
        close(g1[f"layers.{i}.router"], ref[p + "mlp.gate.weight"], f"{family} router {i}")
        close(g1[f"layers.{i}.wq"], ref[p + "self_attn.q_proj.weight"], f"{family} q_proj {i}")
    close(g1["embed"], ref["model.embed_tokens.weight"], f"{family} embed")


def test_killed_and_resumed_run_ends_with_the_same_weights(fixtures, moelab, moelab_bin, tmp_path):
    model = fixtures / "models" / "mixtral"
    ids_file(tmp_path / "d.json", n=8)
    args = ["finetune", str(model), "--data", str(tmp_path / "d.json"), "--seq-len", str(SEQ_LEN), "--steps", "6",
            "--batch-size", "3", "--lr", "1e-3", "--checkpoint-every", "2"]
    moelab(*args, "--checkpoint-dir", tmp_path / "ck_a", "--out", tmp_path / "a")
    # Killed after step 3 (one step past the step-2 checkpoint), then resumed.
    env = dict(os.environ, MOELAB_TEST_EXIT_AFTER_STEP="3")
    proc = subprocess.run([moelab_bin, *args, "--checkpoint-dir", str(tmp_path / "ck_b"), "--out",
                           str(tmp_path / "b")], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 137 and not (tmp_path / "b").exists()
    assert json.loads((tmp_path / "ck_b" / "state.json").read_text())["step"] == 2
    proc = moelab(*args, "--checkpoint-dir", tmp_path / "ck_b", "--resume", "--out", tmp_path / "b")
    assert "resuming after step 2" in proc.stderr + proc.stdout
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    orig = load_file(str(model / "model.safetensors"))
    assert any(not torch.equal(a[k], orig[k]) for k in a)  # training changed the weights


def test_usr1_checkpoints_and_stops_every_rank_and_auto_resume_finishes_the_run(fixtures, moelab, moelab_bin,
                                                                                 tmp_path):
    """What a Slurm task near its time limit does: USR1 -> checkpoint at the step boundary,
    exit 75; the requeued run (same command, --auto-resume) ends with the weights of an
    uninterrupted one. Under 2 ranks, so the ranks must agree on the stopping step."""
    model = fixtures / "models" / "mixtral"
    ids_file(tmp_path / "d.json", n=8)
    args = ["--ranks", "2", "finetune", str(model), "--data", str(tmp_path / "d.json"), "--seq-len", str(SEQ_LEN),
            "--steps", "40", "--batch-size", "2", "--lr", "1e-3", "--checkpoint-every", "1000", "--auto-resume"]
    # --auto-resume without a checkpoint starts from scratch.
    moelab(*args, "--checkpoint-dir", tmp_path / "ck_a", "--out", tmp_path / "a")
    log = tmp_path / "log.jsonl"
    proc = subprocess.Popen([moelab_bin, *args, "--checkpoint-dir", str(tmp_path / "ck_b"), "--log-file", str(log),
                             "--out", str(tmp_path / "b")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.02)
    proc.send_signal(signal.SIGUSR1)  # to mpirun, which forwards it to both ranks
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 75, out
    stopped = json.loads((tmp_path / "ck_b" / "state.json").read_text())["step"]
    assert 3 <= stopped < 40 and not (tmp_path / "b").exists()
    assert len(log.read_text().splitlines()) == stopped
    assert sorted(p.name for p in (tmp_path / "ck_b").glob("rank*.safetensors")) == [
        f"rank0.step{stopped}.safetensors", f"rank1.step{stopped}.safetensors"]
    proc = moelab(*args, "--checkpoint-dir", tmp_path / "ck_b", "--log-file", log, "--out", tmp_path / "b")
    assert f"resuming after step {stopped}" in proc.stderr + proc.stdout
    assert [json.loads(l)["step"] for l in log.read_text().splitlines()] == list(range(1, 41))
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def model_with_tokenizer(fixtures, tmp_path):
    return mixtral_with_tokenizer(fixtures, tmp_path / "model")


def test_sft_puts_the_loss_on_answers_only(model_with_tokenizer, moelab, tmp_path):
    model, tok = model_with_tokenizer
    items = [{"prompt": "Question: two plus two?", "answer": " four"},
             {"prompt": "Capital of France:", "answer": " Paris is the capital"}]
    (tmp_path / "sft.jsonl").write_text("\n".join(json.dumps(x) for x in items))
    moelab("finetune", model, "--sft", tmp_path / "sft.jsonl", "--seq-len", 64, "--steps", 1, "--batch-size", 2,
           "--log-file", tmp_path / "log.jsonl", "--save-grads", tmp_path / "g.safetensors", "--out", tmp_path / "o")
    # Targets: each answer's tokens plus EOS.
    want = sum(len(tok.encode(x["answer"]).ids) + 1 for x in items)
    assert losses(tmp_path / "log.jsonl")[0]["targets"] == want
    # Gradients equal transformers' with the prompt masked out of the labels (-100).
    hf = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    hf.eval()
    eos = tok.token_to_id("<|endoftext|>")
    total = 0
    with torch.enable_grad():
        for x in items:
            p, a = tok.encode(x["prompt"]).ids, tok.encode(x["answer"]).ids + [eos]
            ids = torch.tensor([p + a])
            logits = hf(input_ids=ids).logits[0, :-1]
            logp = torch.log_softmax(logits.float(), -1)
            tgt = ids[0, 1:]
            mask = torch.arange(len(tgt)) >= len(p) - 1
            total = total - logp.gather(-1, tgt[:, None])[:, 0][mask].sum()
        (total / want).backward()
    g = load_file(str(tmp_path / "g.safetensors"))
    close(g["layers.0.experts.gate_up"], hf.model.layers[0].mlp.experts.gate_up_proj.grad, "sft experts")
    close(g["embed"], hf.model.embed_tokens.weight.grad, "sft embed")


def test_sft_on_a_task_file_trains_on_its_contexts_and_right_answers(model_with_tokenizer, moelab, tmp_path):
    """`--sft task.jsonl` (a multiple-choice task, with the YAML beside it) gives exactly the
    gradients of `--sft pairs.jsonl` holding prompt = description + query, answer =
    target_delimiter + choices[gold], the rule configs/tasks/README.md states; the pairs
    path itself is checked against transformers above."""
    model, _ = model_with_tokenizer
    items = [{"query": "Two plus two is", "choices": ["five", "four", "six"], "gold": 1},
             {"query": "The capital of France is", "choices": ["Paris", "Rome"], "gold": 0},
             {"query": "Snow is", "choices": ["green", "hot", "white"], "gold": 2}]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(x) for x in items) + "\n")
    (tmp_path / "t.yaml").write_text('description: "Answer.\\n"\ntarget_delimiter: " => "\n')
    pairs = [{"prompt": "Answer.\n" + x["query"], "answer": " => " + x["choices"][x["gold"]]} for x in items]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(x) for x in pairs) + "\n")
    for name in ("t", "p"):
        moelab("finetune", model, "--sft", tmp_path / f"{name}.jsonl", "--seq-len", 64, "--steps", 1, "--batch-size", 3,
               "--log-file", tmp_path / f"{name}.log", "--save-grads", tmp_path / f"{name}.safetensors",
               "--out", tmp_path / f"o{name}")
    first = [{k: losses(tmp_path / f"{n}.log")[0][k] for k in ("loss", "targets")} for n in ("t", "p")]
    assert first[0] == first[1]
    a, b = load_file(str(tmp_path / "t.safetensors")), load_file(str(tmp_path / "p.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_inputs_are_one_line_errors(model_with_tokenizer, fixtures, moelab, tmp_path):
    model, _ = model_with_tokenizer
    ids_file(tmp_path / "d.json")

    err = functools.partial(input_error, moelab)

    (tmp_path / "sft.jsonl").write_text('{"prompt": "a", "answer": "b"}\n{"prompt": "c"}\n')
    msg = err("finetune", model, "--sft", tmp_path / "sft.jsonl", "--out", tmp_path / "o")
    assert "sft.jsonl:2" in msg and "answer" in msg
    assert "no checkpoint" in err("finetune", model, "--data", tmp_path / "d.json", "--seq-len", SEQ_LEN,
                                  "--checkpoint-dir", tmp_path / "none", "--resume", "--out", tmp_path / "o")
    assert "--data" in err("finetune", model, "--out", tmp_path / "o")
    assert not (tmp_path / "o").exists()
