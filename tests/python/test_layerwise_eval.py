"""moelab eval and forward with --layerwise (issue 29): one decoder layer at a time gives the
whole model's numbers bit for bit (perplexity under both window rules, k-shot multiple choice,
lm-eval requests, logits), under 1 and 2 ranks and with the hidden states in a scratch file; a
checkpoint whose whole-model run is refused under a memory limit is evaluated within it."""
import json
import os
import pathlib
import subprocess

import pytest
import torch
from safetensors.torch import load_file

from bf16_checkpoint import write_bf16_mixtral
from helpers import DEFAULT_MODEL as MODEL, REPO, mixtral_with_tokenizer

TASK = REPO / "configs" / "tasks" / "debian_moe_en.jsonl"
REQUESTS = REPO / "configs" / "tasks" / "requests_example.jsonl"
TEXT = MODEL / "corpus" / "en.test.jsonl"


def eval_args(per_item, windows):
    return ["eval", MODEL, "--data", f"en:{TEXT}", "--max-length", 128, "--windows", windows, "--task", TASK,
            "--num-fewshot", 2, "--requests", REQUESTS, "--per-item", per_item, "--batch-size", 3]


@pytest.mark.parametrize("ranks", [1, 2])
@pytest.mark.parametrize("windows", ["guide", "lm-eval"])
def test_layerwise_eval_equals_the_whole_model_bit_for_bit(ranks, windows, moelab, tmp_path):
    rank_args = ["--ranks", 2] if ranks == 2 else []
    whole, layerwise = tmp_path / "whole.jsonl", tmp_path / "layerwise.jsonl"
    moelab(*rank_args, *eval_args(whole, windows), "--results", tmp_path / "w.results.jsonl")
    proc = moelab(*rank_args, *eval_args(layerwise, windows), "--results", tmp_path / "l.results.jsonl",
                  "--layerwise")
    assert whole.read_text() == layerwise.read_text()  # every NLL, log-likelihood and prediction
    kinds = {json.loads(l)["kind"] for l in whole.read_text().splitlines()}
    assert kinds == {"perplexity", "multiple_choice", "loglikelihood"}
    strip = lambda path: [{k: v for k, v in json.loads(l).items() if k != "timestamp"}
                          for l in path.read_text().splitlines()]
    assert strip(tmp_path / "w.results.jsonl") == strip(tmp_path / "l.results.jsonl")
    assert "layer by layer: 4 layers" in proc.stderr and "peak resident memory" in proc.stderr


@pytest.mark.parametrize("ranks", [1, 2])
def test_layerwise_forward_gives_the_whole_models_logits_through_a_scratch_file(ranks, moelab, tmp_path):
    rank_args = ["--ranks", 2] if ranks == 2 else []
    ids = tmp_path / "ids.json"
    ids.write_text(json.dumps({"input_ids": [[1 + (i * 31 + s) % 4000 for i in range(n)]
                                             for s, n in ((0, 150), (7, 90), (3, 120))]}))
    seqs = ["--ids-json", ids]
    moelab(*rank_args, "forward", MODEL, *seqs, "--batch-size", 2, "--out", tmp_path / "whole.safetensors")
    # A budget just above the largest layer on a rank (7.1 MiB; 3.8 on 2 ranks): the hidden
    # states (0.3 MiB) do not fit in half of what it leaves.
    proc = moelab(*rank_args, "forward", MODEL, *seqs, "--batch-size", 2, "--out", tmp_path / "lw.safetensors",
                  "--layerwise", "--memory-budget", "7.2M" if ranks == 1 else "3.9M", "--scratch-dir", tmp_path)
    assert "in a scratch file" in proc.stderr
    a, b = load_file(str(tmp_path / "whole.safetensors")), load_file(str(tmp_path / "lw.safetensors"))
    assert a.keys() == b.keys() and len(a) == 3
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list(tmp_path.glob("*scratch*"))  # the scratch file had no name


@pytest.mark.parametrize("args,flag", [
    (["eval", MODEL, "--efficiency", "--layerwise"], "--efficiency"),
    (["forward", MODEL, "--text", "a", "--routing", "--layerwise"], "--routing"),
    (["eval", MODEL, "--task", TASK, "--layerwise", "--memory-budget", "1M"], "--memory-budget"),
    (["forward", MODEL, "--text", "a", "--memory-budget", "1G"], "--layerwise"),
])
def test_bad_layerwise_combinations_are_one_line_errors(args, flag, moelab):
    proc = moelab(*args, check=False)
    assert proc.returncode != 0 and flag in proc.stderr, proc.stderr
    errors = [l for l in proc.stderr.splitlines() if "error" in l.lower()]
    assert len(errors) == 1, proc.stderr


@pytest.mark.skipif(not pathlib.Path("/usr/bin/time").exists(), reason="needs /usr/bin/time")
def test_a_model_refused_whole_under_a_limit_is_evaluated_and_forwarded_layer_by_layer_within_it(moelab_bin,
                                                                                                 tmp_path):
    """A bf16 checkpoint of 800 MiB, 1.6 GiB in float32 (3.6 times the limit): under
    MOELAB_MEMORY_LIMIT=450M the whole-model eval is refused at once (one line naming the planned
    peak and --layerwise, nothing written), and the same eval, a forward and a pruning run within
    the limit (peak RSS measured); the numbers are the whole model's (run without the limit), the
    pruned checkpoint the in-memory pruning's."""
    model = tmp_path / "big"
    file_bytes = write_bf16_mixtral(model, layers=16, experts=16, hidden=512, ffn=1024, vocab=8192)
    limit = 450 << 20
    assert file_bytes > 1.5 * limit and file_bytes * 2 > 3.5 * limit
    env = dict(os.environ, MOELAB_MEMORY_LIMIT=str(limit), PMIX_MCA_psec="native")
    task = ["--task", TASK, "--tokenizer", MODEL]

    def run(args, limited=True):
        rss = tmp_path / "rss.txt"
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss, moelab_bin, *map(str, args)],
                              capture_output=True, text=True, timeout=600, env=env if limited else None)
        return proc, int(rss.read_text().split()[-1]) * 1024

    refused, _ = run(["eval", model, *task, "--per-item", tmp_path / "refused.jsonl"])
    assert refused.returncode == 2 and refused.stderr.strip().count("\n") == 0, refused.stderr
    assert "planned peak memory" in refused.stderr and "--layerwise" in refused.stderr
    assert not (tmp_path / "refused.jsonl").exists()

    lw, peak = run(["eval", model, *task, "--per-item", tmp_path / "lw.jsonl", "--layerwise",
                    "--memory-budget", "300M"])
    assert lw.returncode == 0, lw.stderr
    assert peak < limit, (peak, limit)
    whole, whole_peak = run(["eval", model, *task, "--per-item", tmp_path / "whole.jsonl"], limited=False)
    assert whole.returncode == 0, whole.stderr
    assert (tmp_path / "lw.jsonl").read_text() == (tmp_path / "whole.jsonl").read_text()
    assert whole_peak > limit > peak

    ids = tmp_path / "ids.json"
    ids.write_text(json.dumps({"input_ids": [[1 + (i * 37) % 8000 for i in range(40)], [5, 6, 7]]}))
    fl, fpeak = run(["forward", model, "--ids-json", ids, "--out", tmp_path / "lw.safetensors", "--layerwise"])
    assert fl.returncode == 0 and fpeak < limit, (fl.stderr, fpeak)
    fw, _ = run(["forward", model, "--ids-json", ids, "--out", tmp_path / "whole.safetensors"], limited=False)
    assert fw.returncode == 0
    a, b = load_file(str(tmp_path / "whole.safetensors")), load_file(str(tmp_path / "lw.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)

    drops = [a for l in range(16) for a in ("--drop", f"{l}:{','.join(str(e) for e in range(0, 16, 2))}")]
    pl, ppeak = run(["prune", model, *drops, "--out", tmp_path / "pruned"])
    assert pl.returncode == 0 and ppeak < limit, (pl.stderr, ppeak)
    pw, _ = run(["prune", model, *drops, "--in-memory", "--out", tmp_path / "pruned_whole"], limited=False)
    assert pw.returncode == 0, pw.stderr
    got, want = {}, {}
    for d, into in ((tmp_path / "pruned", got), (tmp_path / "pruned_whole", want)):
        for f in d.glob("*.safetensors"):
            into.update(load_file(str(f)))
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k].to(got[k].dtype)) for k in got)


def test_the_help_examples_of_layerwise_eval_and_forward_run_as_documented(moelab, moelab_bin):
    """The --help examples, as a user types them from the repository root."""
    for command in ("eval", "forward"):
        lines = [l.strip() for l in moelab(command, "--help").stdout.splitlines() if "--layerwise --memory-budget" in l]
        assert len(lines) == 1, lines
        import shlex
        args = shlex.split(lines[0])
        assert args[0] == "moelab"
        proc = subprocess.run([moelab_bin, *args[1:]], cwd=REPO, capture_output=True, text=True, timeout=600,
                              env=dict(os.environ, PMIX_MCA_psec="native"))
        assert proc.returncode == 0, proc.stderr
        assert "layer by layer" in proc.stderr and "peak resident memory" in proc.stderr
        assert proc.stdout.strip()  # the table, or the next tokens


def test_a_sweep_with_layerwise_eval_passes_it_to_its_eval_jobs_and_gets_the_same_numbers(moelab, fixtures,
                                                                                          tmp_path):
    """eval.layerwise / eval.memory_budget: every eval job runs `moelab eval --layerwise
    --memory-budget B`, and the sweep's numbers equal the same sweep evaluated whole."""
    from sweep_fixtures import eval_metrics, plan, write_sweep
    model = mixtral_with_tokenizer(fixtures, tmp_path / "mixtral")[0]
    over = dict(criteria=["EAN"], ratios=[0.5], procedures=["one-shot"])
    whole = write_sweep(tmp_path / "a", model, name="s", **over)
    lw = write_sweep(tmp_path / "b", model, name="s", **over)
    spec = __import__("yaml").safe_load(lw.read_text())
    spec["eval"].update(layerwise=True, memory_budget="256M")
    lw.write_text(__import__("yaml").safe_dump(spec))
    for path, out in ((whole, tmp_path / "ra"), (lw, tmp_path / "rb")):
        moelab("sweep", "run", path, "--results", out, "--jobs", 2)
    evals = [j for j in plan(tmp_path / "rb")["jobs"] if j["kind"] == "eval"]
    assert len(evals) == 2
    for j in evals:
        i = j["args"].index("--layerwise")
        assert j["args"][i + 1:i + 3] == ["--memory-budget", "256M"]
    assert all("--layerwise" not in j["args"] for j in plan(tmp_path / "ra")["jobs"])
    assert eval_metrics(tmp_path / "ra") == eval_metrics(tmp_path / "rb")


@pytest.mark.parametrize("section,message", [
    ({"memory_budget": "1G"}, "eval.memory_budget: needs layerwise: true"),
    ({"layerwise": True, "memory_budget": "lots"}, "eval.memory_budget: \"lots\" is not a size"),
    ({"layerwise": "maybe"}, "eval.layerwise"),
])
def test_bad_layerwise_eval_sections_are_one_line_errors(section, message, moelab, fixtures, tmp_path):
    from sweep_fixtures import write_sweep
    path = write_sweep(tmp_path, fixtures / "models" / "mixtral")
    spec = __import__("yaml").safe_load(path.read_text())
    spec["eval"].update(section)
    path.write_text(__import__("yaml").safe_dump(spec))
    proc = moelab("sweep", "plan", path, check=False)
    assert proc.returncode == 2 and message in proc.stderr and proc.stderr.strip().count("\n") == 0, proc.stderr
