"""moelab train: a model built from a config.json with transformers' init (every normal
tensor reproduced from its documented seed), trained by finetune's loop: the loss goes
down, transformers loads the result with moelab's logits, the init and the loss curve do
not depend on the rank count, and bad inputs are one-line errors that write nothing."""
import json

import pytest
import torch
from safetensors.torch import load_file

from helpers import hf_logits, hf_model, moelab_logits

MASK64 = (1 << 64) - 1


def splitmix64(x):
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def tensor_seed(seed, k):
    """core/models/random_init.h: the seed of the k-th normal tensor."""
    return (splitmix64(seed) + k) % (1 << 32)


# Minimal configs: the fields moelab needs; moelab writes out what it assumed for the
# rest (transformers' Mixtral defaults differ: 8 KV heads, rope_theta 1e6, eps 1e-5).
def mixtral_config(**kw):
    cfg = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "vocab_size": 512, "hidden_size": 64,
           "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "num_local_experts": 8, "num_experts_per_tok": 2}
    cfg.update(kw)
    return cfg


def qwen3_config(**kw):
    cfg = {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "vocab_size": 512,
           "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 48, "num_hidden_layers": 3,
           "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 24, "num_experts": 6,
           "num_experts_per_tok": 2, "mlp_only_layers": [1], "attention_bias": True, "norm_topk_prob": True,
           "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}, "initializer_range": 0.05}
    cfg.update(kw)
    return cfg


CONFIGS = {"mixtral": mixtral_config, "qwen3": qwen3_config}
# (block, gate, up, down) in the per-expert tensor names
EXPERT_NAMES = {"mixtral": ("block_sparse_moe", "w1", "w3", "w2"),
                "qwen3": ("mlp", "gate_proj", "up_proj", "down_proj")}


def write_config(path, cfg):
    path.write_text(json.dumps(cfg))
    return path


def normal_tensors(family, cfg):
    """(name, shape) of the normal tensors in the documented draw order."""
    D, V, H, G = cfg["hidden_size"], cfg["vocab_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    A = cfg.get("head_dim") or D // H
    block, gate, up, down = EXPERT_NAMES[family]
    E = cfg.get("num_local_experts", cfg.get("num_experts"))
    F = cfg["moe_intermediate_size"] if family == "qwen3" else cfg["intermediate_size"]
    out = [("model.embed_tokens.weight", (V, D))]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        out += [(p + "self_attn.q_proj.weight", (H * A, D)), (p + "self_attn.k_proj.weight", (G * A, D)),
                (p + "self_attn.v_proj.weight", (G * A, D)), (p + "self_attn.o_proj.weight", (D, H * A))]
        if layer in cfg.get("mlp_only_layers", []):
            Fd = cfg["intermediate_size"]
            out += [(p + "mlp.gate_proj.weight", (Fd, D)), (p + "mlp.up_proj.weight", (Fd, D)),
                    (p + "mlp.down_proj.weight", (D, Fd))]
            continue
        out.append((p + f"{block}.gate.weight", (E, D)))
        for e in range(E):
            x = p + f"{block}.experts.{e}."
            out += [(x + f"{gate}.weight", (F, D)), (x + f"{up}.weight", (F, D)), (x + f"{down}.weight", (D, F))]
    out.append(("lm_head.weight", (V, D)))
    return out


def losses(log):
    return [json.loads(line)["loss"] for line in log.read_text().splitlines()]


def repetitive_ids(path, n=8, seq_len=16, period=7, vocab=512):
    ids = [[(3 + 11 * ((i + j) % period)) % vocab for j in range(seq_len)] for i in range(n)]
    path.write_text(json.dumps({"input_ids": ids}))
    return path


@pytest.mark.parametrize("family", ["mixtral", "qwen3"])
def test_initial_weights_follow_the_init_spec(family, moelab, tmp_path):
    cfg = CONFIGS[family](pad_token_id=3) if family == "mixtral" else CONFIGS[family]()
    config = write_config(tmp_path / "config.json", cfg)
    moelab("train", "--model-config", config, "--steps", 0, "--init-seed", 7, "--out", tmp_path / "init")
    w = load_file(str(tmp_path / "init" / "model.safetensors"))
    saved = json.loads((tmp_path / "init" / "config.json").read_text())
    std = cfg.get("initializer_range", 0.02)
    assert saved["initializer_range"] == std
    # Every normal tensor is exactly torch's normal_ from its documented generator seed.
    normal = normal_tensors(family, cfg)
    for k, (name, shape) in enumerate(normal):
        want = torch.empty(shape).normal_(0, std, generator=torch.Generator().manual_seed(tensor_seed(7, k)))
        if name == "model.embed_tokens.weight" and "pad_token_id" in cfg:
            want[cfg["pad_token_id"]] = 0  # nn.Embedding(padding_idx=pad_token_id)
        assert torch.equal(w[name], want), name
        if w[name].numel() >= 4096:
            assert w[name].std().item() == pytest.approx(std, rel=0.05), name
            assert abs(w[name].mean().item()) < 0.1 * std, name
    rest = set(w) - {n for n, _ in normal}
    assert rest and all(torch.equal(w[n], torch.ones_like(w[n])) for n in rest if "norm" in n)
    assert all(torch.equal(w[n], torch.zeros_like(w[n])) for n in rest if n.endswith(".bias"))
    assert {n for n in rest if "norm" not in n and not n.endswith(".bias")} == set()
    if family == "qwen3":
        assert "model.layers.0.self_attn.q_norm.weight" in rest and "model.layers.0.self_attn.q_proj.bias" in rest
    if "pad_token_id" in cfg:
        assert torch.equal(w["model.embed_tokens.weight"][3], torch.zeros(64))
    # Another seed, other weights.
    moelab("train", "--model-config", config, "--steps", 0, "--init-seed", 8, "--out", tmp_path / "other")
    other = load_file(str(tmp_path / "other" / "model.safetensors"))
    assert not torch.equal(other["lm_head.weight"], w["lm_head.weight"])


@pytest.mark.parametrize("family", ["mixtral", "qwen3"])
def test_training_lowers_the_loss_and_transformers_gives_moelab_logits(family, fixtures, moelab, tmp_path):
    # A real tokenizer and repetitive text: the model must learn the cycle.
    tokenizer = fixtures / "tokenizers" / "bytelevel"
    cfg = CONFIGS[family](vocab_size=1536, num_hidden_layers=2, mlp_only_layers=[1]) if family == "qwen3" else \
        CONFIGS[family](vocab_size=1536)
    config = write_config(tmp_path / "config.json", cfg)
    (tmp_path / "corpus.txt").write_text("the quick brown fox jumps over the lazy dog. " * 60)
    moelab("train", "--model-config", config, "--tokenizer", tokenizer, "--data", tmp_path / "corpus.txt",
           "--seq-len", 24, "--steps", 30, "--batch-size", 4, "--lr", 1e-2, "--warmup", 2, "--init-seed", 1,
           "--log-file", tmp_path / "log.jsonl", "--out", tmp_path / "model")
    curve = losses(tmp_path / "log.jsonl")
    assert len(curve) == 30 and curve[-1] < 0.5 * curve[0], curve
    out = tmp_path / "model"
    assert (out / "tokenizer.json").read_bytes() == (tokenizer / "tokenizer.json").read_bytes()
    g = torch.Generator().manual_seed(3)
    lengths = torch.tensor([12, 7, 10])
    ref = {"input_ids": torch.randint(0, 1536, (3, 12), generator=g), "lengths": lengths}
    hf = hf_logits(hf_model(out, trust_remote_code=False), ref)
    mine = moelab_logits(moelab, out, ref, tmp_path)
    for a, b in zip(hf, mine):
        assert (a - b).abs().max().item() <= 1e-4


def test_two_ranks_give_the_same_init_and_loss_curve(moelab, tmp_path):
    # 5 experts: an uneven split over 2 ranks.
    config = write_config(tmp_path / "config.json", mixtral_config(num_local_experts=5, vocab_size=128))
    data = repetitive_ids(tmp_path / "d.json", vocab=128)
    moelab("train", "--model-config", config, "--steps", 0, "--init-seed", 5, "--out", tmp_path / "i1")
    moelab("--ranks", 2, "train", "--model-config", config, "--steps", 0, "--init-seed", 5, "--out", tmp_path / "i2")
    a, b = load_file(str(tmp_path / "i1" / "model.safetensors")), load_file(str(tmp_path / "i2" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    common = ["train", "--model-config", config, "--data", data, "--seq-len", 16, "--steps", 12, "--batch-size", 4,
              "--micro-batch", 1, "--lr", 5e-3, "--init-seed", 5]
    moelab(*common, "--log-file", tmp_path / "l1.jsonl", "--out", tmp_path / "o1")
    moelab("--ranks", 2, *common, "--log-file", tmp_path / "l2.jsonl", "--out", tmp_path / "o2")
    c1, c2 = losses(tmp_path / "l1.jsonl"), losses(tmp_path / "l2.jsonl")
    assert len(c1) == len(c2) == 12
    assert all(abs(x - y) <= 1e-4 * abs(x) for x, y in zip(c1, c2)), (c1, c2)
    assert c1[-1] < 0.5 * c1[0], c1


def test_bad_inputs_are_one_line_errors_and_write_nothing(fixtures, moelab, tmp_path):
    data = repetitive_ids(tmp_path / "d.json", vocab=512)
    out = tmp_path / "out"

    def err(*args):
        proc = moelab("train", *args, "--out", out, check=False)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().count("\n") == 0, proc.stderr
        assert not out.exists() and not list(tmp_path.glob("out*")), proc.stderr
        return proc.stderr

    def config(name, cfg):
        return write_config(tmp_path / name, cfg)

    msg = err("--model-config", tmp_path / "missing.json", "--data", data)
    assert "missing.json" in msg
    (tmp_path / "broken.json").write_text("{\"vocab_size\": 12,")
    assert "broken.json" in err("--model-config", tmp_path / "broken.json", "--steps", 0)
    msg = err("--model-config", config("foo.json", mixtral_config(architectures=["FooMoeForCausalLM"],
                                                                    model_type="foo_moe")), "--steps", 0)
    assert "foo.json" in msg and "FooMoeForCausalLM" in msg
    msg = err("--model-config", config("nohidden.json", {k: v for k, v in mixtral_config().items()
                                                         if k != "hidden_size"}), "--steps", 0)
    assert "nohidden.json" in msg and "hidden_size" in msg
    msg = err("--model-config", config("std.json", mixtral_config(initializer_range=-1)), "--steps", 0)
    assert "std.json" in msg and "initializer_range" in msg
    # vocab_size below the tokenizer's 1503 tokens, and below the data's ids.
    msg = err("--model-config", config("small.json", mixtral_config()), "--tokenizer",
              fixtures / "tokenizers" / "bytelevel", "--steps", 0)
    assert "small.json" in msg and "vocab_size" in msg and "1503" in msg
    msg = err("--model-config", config("tiny_vocab.json", mixtral_config(vocab_size=64)), "--data", data)
    assert "d.json" in msg and "vocabulary" in msg
    (tmp_path / "text.txt").write_text("some text")
    assert "--tokenizer" in err("--model-config", config("ok.json", mixtral_config()), "--data", tmp_path / "text.txt")
    assert "--data" in err("--model-config", config("ok.json", mixtral_config()), "--steps", 3)
