"""moelab merge as surgery on the checkpoint files (issue 29): the merged checkpoint is written
from the input's files one merge group at a time, with the same tensors, bit for bit, as the
in-memory merge (--in-memory: load in float32, merge in float64, save in the input's dtype), for
every expert layout (per-expert, transformers 5's fused, Llama-4's fused and transposed), shared
experts, correction biases (DeepSeek-V3 [E], ERNIE-4.5 [1, E]) and both router rules; a sharded
bf16 checkpoint is merged in a fraction of its size; a full disk leaves nothing."""
import functools
import json

import pytest
import torch

import helpers
from bf16_checkpoint import write_bf16_mixtral
from helpers import leftovers, peak_rss_kib, run_limited, same_bytes, tensors

FAMILIES = ["mixtral", "mixtral_fused", "qwen2_moe", "deepseek_v3", "ernie4_5_moe", "glm4_moe", "llama4", "phimoe",
            "qwen3_next"]
# test_merging.py's calibration: 8 windows (seed 11) in batches of 3, the EUF criterion.
token_file = functools.partial(helpers.token_file, n=8, seed=11)
calibrate = functools.partial(helpers.calibrate, options=("--batch-size", 3, "--criteria", "EUF"))


def assert_same_checkpoints(a, b):
    """Same tensors bit for bit. Surgery keeps the input's layout (transformers 5's fused
    experts stay fused) where the in-memory path writes the Hub's per-expert one: those are
    compared as transformers loads them."""
    ta, tb = tensors(a), tensors(b)
    if ta.keys() != tb.keys():
        from transformers import AutoModelForCausalLM
        ta, tb = ({k: v.detach() for k, v in AutoModelForCausalLM.from_pretrained(d, dtype="auto").state_dict().items()}
                  for d in (a, b))
        assert ta.keys() == tb.keys()
    different = [k for k in ta if not same_bytes(ta[k], tb[k])]
    assert not different, different[:5]
    ca, cb = json.loads((a / "config.json").read_text()), json.loads((b / "config.json").read_text())
    assert ca == cb


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("router", ["avg", "dominant"])
def test_merge_by_surgery_writes_the_in_memory_merges_tensors(family, router, fixtures, moelab, tmp_path):
    model = fixtures / "models" / family
    calibrate(moelab, model, token_file(tmp_path / "cal.json"), tmp_path / "s.h5", "--collect", "dense_outputs")
    args = ["--stats", tmp_path / "s.h5", "--ratio", 0.25, "--router-merge", router]
    moelab("merge", model, *args, "--out", tmp_path / "surgery", "--plan-out", tmp_path / "plan.json")
    moelab("merge", model, *args, "--out", tmp_path / "memory", "--in-memory")
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert any(len(g) > 1 for body in plan["layers"].values() for g in body["groups"])  # something merged
    assert_same_checkpoints(tmp_path / "surgery", tmp_path / "memory")


def test_a_sharded_bf16_checkpoint_is_merged_in_a_fraction_of_its_size(moelab, moelab_bin, tmp_path):
    """400 MB of bf16 in 4 shards (800 MB in float32): the surgery's peak is about one merge
    group above the process baseline, and its shards, index and tensors are the in-memory
    merge's (bf16 kept)."""
    src = tmp_path / "bf16"
    size = write_bf16_mixtral(src)
    ids = tmp_path / "ids.json"
    ids.write_text(json.dumps({"input_ids": [[1 + (i * 31 + j) % 8000 for j in range(32)] for i in range(4)]}))
    moelab("calibrate", src, "--data", ids, "--seq-len", 32, "--criteria", "EUF", "--collect", "dense_outputs",
           "--out", tmp_path / "s.h5")
    baseline = peak_rss_kib([moelab_bin, "inspect", src]) * 1024
    out = tmp_path / "merged"
    peak = peak_rss_kib([moelab_bin, "merge", src, "--stats", tmp_path / "s.h5", "--ratio", 0.5, "--out", out]) * 1024
    print(f"[merge surgery] checkpoint {size / 2**20:.0f} MiB: peak RSS {peak / 2**20:.0f} MiB "
          f"(moelab inspect {baseline / 2**20:.0f} MiB)")
    # A merge group of 2 experts: their bf16 pages (3 x 2 x 1 MiB) and a float64 sum (8 MiB);
    # holding the model would be `size` or twice it.
    assert peak - baseline < size / 8, (peak, baseline, size)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == sorted(p.name for p in src.glob("model-*.safetensors"))
    assert json.loads((out / "config.json").read_text())["num_local_experts"] == 8
    moelab("merge", src, "--stats", tmp_path / "s.h5", "--ratio", 0.5, "--out", tmp_path / "memory", "--in-memory")
    got, want = tensors(out), tensors(tmp_path / "memory")
    assert got.keys() == want.keys() and all(same_bytes(got[k], want[k]) for k in got)
    assert got["model.layers.0.block_sparse_moe.experts.0.w1.weight"].dtype == torch.bfloat16


def test_merge_on_a_full_disk_leaves_nothing(fixtures, moelab, moelab_bin, tmp_path):
    """A file-size limit (tests/python/test_faults.py: as a full disk) makes the merged shard's
    write fail: an error, a non-zero exit, neither the output nor a temporary left behind."""
    model = fixtures / "models" / "mixtral"
    calibrate(moelab, model, token_file(tmp_path / "cal.json"), tmp_path / "s.h5", "--collect", "dense_outputs")
    out = tmp_path / "out" / "merged"
    out.parent.mkdir()
    r = run_limited(moelab_bin, 4096, "merge", model, "--stats", tmp_path / "s.h5", "--ratio", 0.5, "--out", out)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].startswith("error:"), r.stderr
    assert not out.exists() and leftovers(out.parent) == [] and list(out.parent.iterdir()) == []


@pytest.mark.parametrize("family", ["mixtral", "mixtral_fused", "qwen2_moe", "olmoe", "deepseek_v3"])
@pytest.mark.parametrize("variant", ["official", "moelab-v1"])
def test_compress_by_surgery_writes_the_in_memory_checkpoint(family, variant, fixtures, moelab, tmp_path):
    """moelab compress copies every tensor as stored and adds each MoE layer's vectors (ones)
    after its router: the same tensors and config as loading, compressing and saving."""
    model = fixtures / "models" / family
    args = ["compress", model, "--main", 1, "--variant", variant]
    moelab(*args, "--out", tmp_path / "surgery")
    moelab(*args, "--out", tmp_path / "memory", "--in-memory")
    got = tensors(tmp_path / "surgery")
    vectors = [k for k in got if k.endswith(".mlp.ces" if variant == "official" else ".mlp.experts.theta")]
    assert vectors and all(torch.all(got[k] == 1) for k in vectors)
    if family != "mixtral_fused":  # the in-memory path writes the Hub's per-expert layout
        assert_same_checkpoints(tmp_path / "surgery", tmp_path / "memory")
    else:
        want = tensors(tmp_path / "memory")
        assert all(same_bytes(got[k], want[k]) for k in vectors)
        assert json.loads((tmp_path / "surgery" / "config.json").read_text()) == \
            json.loads((tmp_path / "memory" / "config.json").read_text())


def test_a_sharded_bf16_checkpoint_is_compressed_in_a_fraction_of_its_size(moelab_bin, tmp_path):
    src = tmp_path / "bf16"
    size = write_bf16_mixtral(src)
    baseline = peak_rss_kib([moelab_bin, "inspect", src]) * 1024
    out = tmp_path / "compressed"
    peak = peak_rss_kib([moelab_bin, "compress", src, "--main", 1, "--out", out]) * 1024
    assert peak - baseline < size / 8, (peak, baseline, size)
    got = tensors(out)
    ces = [k for k in got if k.startswith("model.layers.7.") and k.endswith(".ces")]
    assert len(ces) == 1 and got[ces[0]].dtype == torch.bfloat16 and got[ces[0]].shape[0] == 16
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(got)
    assert json.loads((out / "config.json").read_text())["moelab_compressed_experts"]["main"] == 1
