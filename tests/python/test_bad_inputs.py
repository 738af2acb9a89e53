"""Corrupt checkpoints and configs: every command exits nonzero with ONE line of
error that names the file and the problem, and writes nothing."""
import json
import shutil
import struct

import pytest
from safetensors.torch import load_file, save_file


def corrupt_truncate(d):
    f = d / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    return "model.safetensors", "truncated"


def corrupt_header_length(d):
    f = d / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[:8] = struct.pack("<Q", len(data) + 1000)
    f.write_bytes(bytes(data))
    return "model.safetensors", "past the end"


def corrupt_shape(d):
    f = d / "model.safetensors"
    tensors = load_file(str(f))
    name = "model.layers.1.self_attn.q_proj.weight"
    tensors[name] = tensors[name][:-1].clone()
    save_file(tensors, str(f), metadata={"format": "pt"})
    return "model.safetensors", name


def corrupt_architecture(d):
    f = d / "config.json"
    cfg = json.loads(f.read_text())
    cfg["architectures"] = ["FooMoeForCausalLM"]
    cfg["model_type"] = "foo_moe"
    f.write_text(json.dumps(cfg))
    return "config.json", "FooMoeForCausalLM"


def corrupt_config_field(d):
    f = d / "config.json"
    cfg = json.loads(f.read_text())
    cfg["hidden_size"] = "sixty-four"
    f.write_text(json.dumps(cfg))
    return "config.json", "hidden_size"


def corrupt_missing_tensor(d):
    f = d / "model.safetensors"
    tensors = load_file(str(f))
    name = "model.layers.2.block_sparse_moe.experts.3.w2.weight"
    del tensors[name]
    save_file(tensors, str(f), metadata={"format": "pt"})
    return "", name


CORRUPTIONS = [corrupt_truncate, corrupt_header_length, corrupt_shape, corrupt_architecture,
               corrupt_config_field, corrupt_missing_tensor]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("command", ["inspect", "forward", "prune"])
def test_bad_checkpoint_is_one_line_error(corrupt, command, fixtures, moelab, tmp_path):
    d = tmp_path / "model"
    shutil.copytree(fixtures / "models" / "mixtral", d)
    filename, needle = corrupt(d)
    out = tmp_path / "out"
    args = {"inspect": ["inspect", d],
            "forward": ["forward", d, "--ids-json", _ids(tmp_path), "--out", out],
            "prune": ["prune", d, "--drop", "0:1", "--out", out]}[command]
    proc = moelab(*args, check=False)
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert err.count("\n") == 0, f"expected one line, got:\n{err}"
    assert err.startswith("error: ")
    assert str(d / filename) in err
    assert needle in err
    assert not out.exists() and not list(tmp_path.glob("out*"))


def _ids(tmp_path):
    p = tmp_path / "ids.json"
    p.write_text(json.dumps({"input_ids": [[1, 2, 3]]}))
    return p


def test_out_of_range_token_ids_are_rejected(fixtures, moelab, tmp_path):
    p = tmp_path / "ids.json"
    p.write_text(json.dumps({"input_ids": [[1, 2, 99999]]}))
    proc = moelab("forward", fixtures / "models" / "mixtral", "--ids-json", p, check=False)
    assert proc.returncode == 2 and "out of range" in proc.stderr


def test_inspect_reports_experts_and_active_params(fixtures, moelab):
    proc = moelab("inspect", fixtures / "models" / "qwen3", "--json")
    info = json.loads(proc.stdout)
    assert [layer["experts"] for layer in info["layers"]] == [10, 0, 10]
    assert [layer["type"] for layer in info["layers"]] == ["moe", "dense", "moe"]
    # Active parameters: everything but the routed experts, plus k=2 experts per MoE layer.
    p = info["params"]
    expert = 3 * 64 * 48
    assert p["routed_experts"] == 2 * 10 * expert
    assert p["active_per_token"] == p["total"] - p["routed_experts"] + 2 * 2 * expert
