"""Helpers shared by the end-to-end tests, each defined once, so that no test file imports
another (pytest fixtures stay in conftest.py; sweep specs and results readers in
sweep_fixtures.py). torch, transformers and safetensors are imported inside the functions
that need them: the tests that need none of them stay quick to start."""
import json
import math
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / "models" / "debian-moe"  # the shipped model (models/debian-moe/README.md)
SEQ_LEN = 16  # the calibration window of the tests on the fixture models


# -- Token files and tokenizers ------------------------------------------------------------

def seeded_ids(n, seed, vocab=512, seq_len=SEQ_LEN):
    """[n, seq_len] token ids drawn uniformly from [1, vocab) by a seeded torch generator
    (the same seed, the same ids: the tests' references see what moelab sees)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, vocab, (n, seq_len), generator=g)


def ids_file(path, n, seed, vocab=512, seq_len=SEQ_LEN):
    """seeded_ids written to `path` as {"input_ids": [...]} (every row one window); returns the
    ids, for a reference computed on the same tokens."""
    ids = seeded_ids(n, seed, vocab, seq_len)
    path.write_text(json.dumps({"input_ids": ids.tolist()}))
    return ids


def token_file(path, n, seed, vocab=512, seq_len=SEQ_LEN):
    """ids_file, returning the path (what --data takes)."""
    ids_file(path, n, seed, vocab, seq_len)
    return path


def write_ids_json(path, input_ids, lengths):
    """The first lengths[b] ids of each row of input_ids, as `forward --ids-json` reads them."""
    seqs = [input_ids[b, : int(n)].tolist() for b, n in enumerate(lengths)]
    path.write_text(json.dumps({"input_ids": seqs}))
    return path


def train_small_tokenizer(fixtures, out_dir):
    """A byte-level BPE trained on the fixture text, small enough (<= 512 ids) for the
    fixture models' vocabulary, saved as out_dir/tokenizer.json; returns it."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator([(fixtures / "tokenizers" / "multilingual.txt").read_text()],
                            trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"], show_progress=False,
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    assert tok.get_vocab_size() <= 512
    tok.save(str(out_dir / "tokenizer.json"))
    return tok


def mixtral_with_tokenizer(fixtures, out_dir):
    """The mixtral fixture copied to out_dir with train_small_tokenizer's tokenizer."""
    shutil.copytree(fixtures / "models" / "mixtral", out_dir)
    return out_dir, train_small_tokenizer(fixtures, out_dir)


# -- moelab commands -----------------------------------------------------------------------

def calibrate(moelab, model, data, out, *extra, ranks=None, options=(), seq_len=SEQ_LEN):
    """`moelab [--ranks N] calibrate MODEL --data DATA --seq-len L --num-samples 0 OPTIONS
    --out OUT EXTRA...` (every window of DATA, no sampling); OPTIONS are a test file's fixed
    settings, EXTRA a test's own. Returns the CompletedProcess."""
    args = (["--ranks", ranks] if ranks else []) + ["calibrate", model, "--data", data, "--seq-len", seq_len,
                                                     "--num-samples", 0, *options, "--out", out, *extra]
    return moelab(*args)


def prune(moelab, src, out, drops, *extra):
    """`moelab prune SRC --out OUT EXTRA... --drop D...` for drops like "0:1,5"."""
    args = ["prune", src, "--out", out, *extra]
    for d in drops:
        args += ["--drop", d]
    return moelab(*args)


def one_line_error(proc, prefix="error: "):
    """Asserts that the command failed with exactly one line on stderr, starting with
    `prefix` (prefix="": any line); returns that line."""
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), proc.stderr
    return lines[0]


def input_error(moelab, *args):
    """Runs `moelab ARGS...` and asserts a refused input as the README documents it (exit
    status 2, one line on stderr); returns stderr, for the test to check what it names."""
    proc = moelab(*args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    return proc.stderr


def moelab_logits(moelab, model_dir, ref, tmp_path):
    """moelab forward's logits of the reference sequences (ref: a fixture's .ref.safetensors),
    one [length, V] tensor per sequence."""
    from safetensors.torch import load_file
    ids_json = write_ids_json(tmp_path / "ids.json", ref["input_ids"], ref["lengths"])
    out = tmp_path / "moelab_logits.safetensors"
    moelab("forward", model_dir, "--ids-json", ids_json, "--out", out)
    got = load_file(str(out))
    return [got[f"logits.{b}"] for b in range(len(ref["lengths"]))]


def moelab_forward(moelab, model_dir, ids, tmp_path, *extra):
    """moelab forward on full-length rows of ids (EXTRA: options before the subcommand, such
    as --ranks); returns ([B, T, V] logits, moelab's stderr + stdout)."""
    import torch
    from safetensors.torch import load_file
    ids_json = write_ids_json(tmp_path / "ids.json", ids, torch.full((ids.shape[0],), ids.shape[1]))
    out = tmp_path / "logits.safetensors"
    proc = moelab(*extra, "forward", model_dir, "--ids-json", ids_json, "--out", out)
    got = load_file(str(out))
    return torch.stack([got[f"logits.{b}"] for b in range(ids.shape[0])]), proc.stderr + proc.stdout


# -- transformers references ---------------------------------------------------------------

def hf_model(model_dir, trust_remote_code=None):
    """transformers' model in float32, in eval mode (no router jitter or dropout; autograd
    still records). trust_remote_code: True for a checkpoint with uneven expert counts."""
    import torch
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                trust_remote_code=trust_remote_code).eval()


def hf_logits(model, ref):
    """The model's logits of the reference sequences (padded, with an attention mask), one
    [length, V] tensor per sequence."""
    import torch
    ids, lengths = ref["input_ids"], ref["lengths"]
    mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask).logits
    return [out[b, : int(n)] for b, n in enumerate(lengths)]


def split_ref(ref):
    """The fixture's stored transformers logits (concatenated) split per sequence."""
    out, start = [], 0
    for n in ref["lengths"].tolist():
        out.append(ref["logits"][start:start + n])
        start += n
    return out


def assert_transformers_matches_moelab(moelab, fixtures, family, pruned, tmp_path, trust_remote_code=False):
    """transformers loads the checkpoint `pruned` and gives moelab's logits (1e-4) on the
    family's reference sequences."""
    from safetensors.torch import load_file
    ref = load_file(str(fixtures / "models" / f"{family}.ref.safetensors"))
    hf = hf_logits(hf_model(pruned, trust_remote_code=trust_remote_code), ref)
    mine = moelab_logits(moelab, pruned, ref, tmp_path)
    for a, b in zip(hf, mine):
        assert (a - b).abs().max().item() <= 1e-4


def moe_layers(model):
    """Indices of the decoder layers whose MLP is a routed-expert block."""
    return [i for i, layer in enumerate(model.model.layers) if hasattr(layer.mlp, "experts")]


def capture_moe_io(model, ids):
    """Per MoE layer: the residual entering the block (input of post_attention_layernorm),
    the block's input (normed) and its output."""
    import torch
    got, hooks = {}, []
    for i in moe_layers(model):
        layer = model.model.layers[i]
        hooks.append(layer.post_attention_layernorm.register_forward_hook(
            lambda m, inp, out, i=i: got.setdefault(i, {}).update(h_in=inp[0].reshape(-1, inp[0].shape[-1]))))
        hooks.append(layer.mlp.register_forward_hook(
            lambda m, inp, out, i=i: got[i].update(
                x=inp[0].reshape(-1, inp[0].shape[-1]),
                y=(out[0] if isinstance(out, tuple) else out).reshape(-1, inp[0].shape[-1]))))
    with torch.no_grad():
        model(input_ids=ids)
    for h in hooks:
        h.remove()
    return got


def expert_outputs(x, mlp):
    """Every expert's output f_j(x) of every token, float64 [N, E, D] (fused SwiGLU experts)."""
    import torch
    gu, dn = mlp.experts.gate_up_proj.double(), mlp.experts.down_proj.double()
    F = gu.shape[1] // 2
    h = torch.einsum("nd,efd->enf", x, gu)
    a = torch.nn.functional.silu(h[..., :F]) * h[..., F:]
    return torch.einsum("enf,edf->ned", a, dn)  # [N, E, D]


def tau_b(x, y):
    """Kendall's tau-b of two equally long sequences, by hand (None when one is constant)."""
    n0 = nc = nd = t1 = t2 = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            n0 += 1
            dx, dy = x[i] - x[j], y[i] - y[j]
            t1 += dx == 0
            t2 += dy == 0
            if dx and dy:
                if (dx > 0) == (dy > 0):
                    nc += 1
                else:
                    nd += 1
    den = math.sqrt((n0 - t1) * (n0 - t2))
    return (nc - nd) / den if den else None


# -- Checkpoint files ----------------------------------------------------------------------

def tensors(model_dir):
    """name -> tensor of every safetensors file in the directory."""
    from safetensors import safe_open
    out = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(f), "pt") as h:
            for name in h.keys():
                out[name] = h.get_tensor(name)
    return out


def raw_bytes(t):
    """The tensor's storage as flat uint8 (an empty tensor: none)."""
    import torch
    return t.contiguous().view(torch.uint8).flatten() if t.numel() else torch.empty(0, dtype=torch.uint8)


def same_bytes(a, b):
    """Same dtype, shape and bytes: equal bit for bit (NaNs included)."""
    import torch
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(raw_bytes(a), raw_bytes(b))


# -- Processes and faults ------------------------------------------------------------------

def peak_rss_kib(cmd):
    """Peak resident memory (KiB) of `cmd` run alone in a fresh Python process."""
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    r = subprocess.run([sys.executable, "-c", probe, *map(str, cmd)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.strip().splitlines()[-1])


def file_size_limit(nbytes):
    """preexec_fn: files this process (and its children) write stop at nbytes."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return apply


def run_limited(moelab_bin, nbytes, *args):
    """`moelab ARGS...` whose files stop at nbytes, as on a full disk; the CompletedProcess."""
    # The limit is for moelab's outputs. mpirun's PMIx server keeps its job data in
    # shared-memory segment files (the "dstore") that grow with the job's command lines
    # and paths: under a limit of a few hundred KiB mpirun itself hit it once (SIGXFSZ,
    # "PMIX ERROR: OUT-OF-RESOURCE") and then waited forever for its dead rank. PMIx's
    # hash store keeps that data in memory instead.
    env = dict(os.environ, PMIX_MCA_gds="hash")
    return subprocess.run([moelab_bin, *map(str, args)], capture_output=True, text=True, timeout=600,
                          preexec_fn=file_size_limit(nbytes), env=env)


def leftovers(d):
    """Temporary files (".tmp-" names) anywhere under d: a failed write must leave none."""
    return sorted(p.name for p in d.rglob("*") if ".tmp-" in p.name)


# -- lm-evaluation-harness tasks -----------------------------------------------------------

def en_items(n):
    """The first n items of the shipped English multiple-choice task."""
    with open(REPO / "configs" / "tasks" / "debian_moe_en.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f][:n]


def en_documents(n):
    """The first n documents of the default model's held-out English split."""
    with open(DEFAULT_MODEL / "corpus" / "en.test.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f][:n]


def write_tasks(tmp_path):
    """Two lm-eval task YAMLs over local JSON lines: a multiple-choice task (the shipped
    debian_moe_en items) and a rolling-perplexity task (5 held-out documents)."""
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps(it, ensure_ascii=False) + "\n" for it in en_items(40)), encoding="utf-8")
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in en_documents(5)),
                    encoding="utf-8")
    (tmp_path / "mc.yaml").write_text(f"""task: moelab_test_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {items}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{query}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{gold}}}}"
target_delimiter: ""
metric_list:
  - metric: acc
  - metric: acc_norm
""")
    (tmp_path / "ppl.yaml").write_text(f"""task: moelab_test_ppl
dataset_path: json
dataset_kwargs:
  data_files:
    test: {docs}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
""")
    return tmp_path
