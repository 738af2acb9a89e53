#!/usr/bin/env python3
"""The hybrid-attention families' forward (Gated DeltaNet linear attention + gated full attention,
MoE feed-forward; issue 26): `moelab forward` against transformers' own implementation, on the
CPU, side by side in one run, on the same random-weight checkpoint and the same token batch.

For each family (Qwen3NextForCausalLM, Qwen3_5MoeForCausalLM's text model) it
 1. builds a random-weight model with transformers at a per-layer shape like the released ones
    (hidden 2048, 16 query / 2 key-value heads of 256, 16 key / 32 value linear heads of 128,
    64 experts top-8 of 512, shared expert 512) but few layers (default 3 Gated DeltaNet + 1 full
    attention), spreads the hybrid-specific weights (zero-centred norms, decays, convolution) as
    tests/fixtures/make_models.py does, and saves it with save_pretrained (float32);
 2. times transformers' forward on B random sequences of T tokens: the model loaded with
    from_pretrained, eval, torch.no_grad, use_cache=False, torch threads = --threads; the first
    pass, then the median of --repeat more. Nothing but model(input_ids, attention_mask) is timed.
    With --breakdown (default) one more pass times its parts with forward hooks (Gated DeltaNet,
    and the delta rule inside it, full attention, MoE blocks, lm_head);
 3. times `moelab forward MODEL --ids-json ids.json --top 1` (OMP_NUM_THREADS = --threads, all
    sequences in one batch) --repeat times. The CLI runs one pass per process, so its pass is
    estimated two ways: (a) its log from "loaded" (model in memory) to the process's exit, and
    (b) the whole process minus that of the same command on a 1-token sequence (start-up + load).
    Both include computing every position's logits and moelab's exit (freeing the model). With
    --malloc-row (default) also with glibc's malloc thresholds set (GLIBC_TUNABLES) as
    jobs::reuse_freed_blocks() sets them in calibrate/eval/generate, alternating with the plain runs;
 4. runs `moelab forward ... --out logits.safetensors` once and reports the largest |logit
    difference| against transformers' logits (every position of every sequence).

The machine's float32 torch.mm rate on the same threads is measured at the end, for the
"weight-matmul GFLOP/s" column (the pass's projection, expert and lm_head FLOPs over its time). On a
shared machine, --wait-idle S waits up to S seconds for an idle machine before each timed pass; the CPU
other processes took during each pass is recorded either way.

  python3 bench/hybrid_forward.py --moelab build/runner/moelab [--family qwen3_next|qwen3_5_moe|both]
      [--batch 4 --seq-len 512] [--repeat 3] [--layers 4] [--wait-idle 300] [--json out.json]
  python3 bench/hybrid_forward.py --report-only out.json   (the report of a saved run)
  python3 bench/hybrid_forward.py --moelab build/runner/moelab --quick   (tiny: checks the script)
  python3 bench/hybrid_forward.py --moelab build/runner/moelab --family qwen3_next --shapes 16x128,4x512,1x2048
      (moelab and transformers at the same token count, several sequence lengths: the part of the
       pass that grows with the sequence is token mixing; the rest is per token)
  python3 bench/hybrid_forward.py --moelab build/runner/moelab --family qwen3_next --full-every 1
      (every layer full attention: against the default, what the Gated DeltaNet layers cost)
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures"))
import make_models  # noqa: E402  (hybrid_weights)

ROOT = pathlib.Path(__file__).resolve().parents[1]
FAMILIES = ("qwen3_next", "qwen3_5_moe")
NAMES = {"qwen3_next": "Qwen3-Next (Qwen3NextForCausalLM)", "qwen3_5_moe": "Qwen3.5-MoE text (Qwen3_5MoeForCausalLM)"}


def build_model(family, path, a):
    """Random weights at the requested shape, saved with save_pretrained in float32; returns params."""
    from transformers import Qwen3NextConfig, Qwen3NextForCausalLM
    from transformers import logging as hf_logging
    from transformers.models.qwen3_5_moe import Qwen3_5MoeForCausalLM, Qwen3_5MoeTextConfig
    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    # the released models' pattern: every full_every-th layer full attention, the rest Gated DeltaNet
    layer_types = ["full_attention" if (i + 1) % a.full_every == 0 else "linear_attention" for i in range(a.layers)]
    if "full_attention" not in layer_types:
        layer_types[-1] = "full_attention"
    shape = dict(vocab_size=a.vocab, hidden_size=a.hidden, num_hidden_layers=a.layers, num_attention_heads=a.heads,
                 num_key_value_heads=a.kv_heads, head_dim=a.head_dim, linear_num_key_heads=a.linear_key_heads,
                 linear_num_value_heads=a.linear_value_heads, linear_key_head_dim=a.linear_head_dim,
                 linear_value_head_dim=a.linear_head_dim, num_experts=a.experts, num_experts_per_tok=a.top_k,
                 moe_intermediate_size=a.moe_inter, shared_expert_intermediate_size=a.moe_inter,
                 layer_types=layer_types, max_position_embeddings=4096, tie_word_embeddings=False,
                 bos_token_id=0, eos_token_id=0, pad_token_id=0)
    if family == "qwen3_next":
        cfg, cls = Qwen3NextConfig(intermediate_size=4 * a.moe_inter, **shape), Qwen3NextForCausalLM
    else:
        cfg, cls = Qwen3_5MoeTextConfig(**shape), Qwen3_5MoeForCausalLM
    model = cls(cfg).eval()
    with torch.no_grad():
        make_models.hybrid_weights(model)  # the fixtures' spread of norms, decays and convolution
    model.save_pretrained(path)
    n = sum(p.numel() for p in model.parameters())
    del model
    return n, layer_types


CLK = os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds the whole machine spent busy during an interval, less this process's and its
    waited-for children's: what other processes took from the measurement."""

    def __init__(self):
        self.machine, self.ours = self._read()

    @staticmethod
    def _read():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        busy = (sum(v) - v[3] - v[4]) / CLK  # all but idle and iowait
        s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return busy, s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

    def others(self):
        machine, ours = self._read()
        return max(0.0, (machine - self.machine) - (ours - self.ours))


def wait_idle(max_s, window=2.0, need=3):
    """Waits (at most max_s) until the machine is >= 95% idle for `need` windows in a row."""
    if max_s <= 0:
        return 0.0
    t0, ok = time.perf_counter(), 0
    while time.perf_counter() - t0 < max_s:
        m = CpuMeter()
        time.sleep(window)
        busy = (m._read()[0] - m.machine) / (window * os.cpu_count())
        ok = ok + 1 if busy <= 0.05 else 0
        if ok >= need:
            break
    waited = time.perf_counter() - t0
    if waited > window * need + 1:
        print(f"  waited {waited:.0f} s for an idle machine", file=sys.stderr)
    return waited


def hf_forward(path, ids, lengths, a):
    """Loads the checkpoint, times model(input_ids, attention_mask): the first pass, then the
    median of `repeat` more (warm)."""
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    load_s = time.perf_counter() - t0
    x = torch.tensor(ids)
    mask = torch.zeros_like(x)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
    times, others = [], []
    with torch.no_grad():
        for _ in range(a.repeat + 1):
            wait_idle(a.wait_idle)
            meter, t0 = CpuMeter(), time.perf_counter()
            logits = model(input_ids=x, attention_mask=mask, use_cache=False).logits
            times.append(time.perf_counter() - t0)
            others.append(meter.others())
        if a.breakdown:
            info_parts = breakdown(model, x, mask, a)
    info = {"load_s": load_s, "first_pass_s": times[0], "pass_s": statistics.median(times[1:]), "passes_s": times,
            "others_cpu_s": others,
            "experts_implementation": getattr(model.config, "_experts_implementation", None),
            "attn_implementation": getattr(model.config, "_attn_implementation", None)}
    if a.breakdown:
        info["parts_s"] = info_parts
    try:
        import fla  # noqa: F401
        info["delta_rule"] = "flash-linear-attention (installed)"
    except ImportError:
        info["delta_rule"] = "torch fallback (torch_chunk_gated_delta_rule; flash-linear-attention not installed)"
    del model
    return info, logits


def breakdown(model, x, mask, a):
    """One more (warm) pass with forward hooks timing each part: seconds per part, summed over layers."""
    import sys as _sys
    parts = {"linear attention (Gated DeltaNet)": "GatedDeltaNet", "of which the delta rule": None,
             "full attention": "Attention", "MoE blocks": "SparseMoeBlock", "lm_head": None}
    spent, start, handles = {k: 0.0 for k in parts}, {}, []

    def hook(key, module):
        def pre(*_):
            start[id(module)] = time.perf_counter()

        def post(*_):
            spent[key] += time.perf_counter() - start.pop(id(module))
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))

    modeling = None
    for name, module in model.named_modules():
        cls = type(module).__name__
        if name == "lm_head":
            hook("lm_head", module)
        for key, suffix in parts.items():
            if suffix and cls.endswith(suffix) and not (suffix == "Attention" and cls.endswith("GatedDeltaNet")):
                hook(key, module)
                if suffix == "GatedDeltaNet":
                    modeling = _sys.modules[type(module).__module__]
    # the delta rule as the Gated DeltaNet's forward calls it (a module-level function)
    original = modeling.torch_chunk_gated_delta_rule if modeling else None

    def timed_rule(*args, **kw):
        t0 = time.perf_counter()
        try:
            return original(*args, **kw)
        finally:
            spent["of which the delta rule"] += time.perf_counter() - t0
    if modeling:
        modeling.torch_chunk_gated_delta_rule = timed_rule
    try:
        wait_idle(a.wait_idle)
        t0 = time.perf_counter()
        model(input_ids=x, attention_mask=mask, use_cache=False)
        total = time.perf_counter() - t0
    finally:
        if modeling:
            modeling.torch_chunk_gated_delta_rule = original
        for h in handles:
            h.remove()
    spent["rest (embedding, norms, residuals, final norm)"] = total - sum(
        v for k, v in spent.items() if k != "of which the delta rule")
    spent["total"] = total
    return spent


def log_stamp(stderr, key):
    """Seconds of the day (local time) of the first log line containing `key`."""
    for line in stderr.splitlines():
        m = re.match(r"\[(\d+):(\d+):(\d+\.\d+)\]", line)
        if m and key in line:
            return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    return None


def seconds_of_day():
    now = datetime.datetime.now()
    return now.hour * 3600 + now.minute * 60 + now.second + now.microsecond / 1e6


# What `jobs::reuse_freed_blocks()` sets in calibrate, eval and generate (mallopt), as glibc
# tunables for the forward command, which does not call it.
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=67108864"


def moelab_run(a, model, ids_json, batch, extra, env_extra=None):
    """One `moelab forward` process: dict(wall s, log "loaded" -> exit s, others' CPU s)."""
    wait_idle(a.wait_idle)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads), PMIX_MCA_psec="native",
               **(env_extra or {}))
    cmd = [str(a.moelab), "--log-level", "debug", "forward", str(model), "--ids-json", str(ids_json),
           "--batch-size", str(batch), *extra]
    meter, t0 = CpuMeter(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    end = seconds_of_day()
    others = meter.others()
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    loaded = log_stamp(proc.stderr, "loaded ")
    after_load = (end - loaded) % 86400 if loaded is not None else float("nan")
    return {"wall_s": wall, "after_load_s": after_load, "others_cpu_s": others}


def compare(hf_logits, out_file, lengths):
    from safetensors.torch import load_file
    got = load_file(str(out_file))
    worst, scale = 0.0, 0.0
    for b, n in enumerate(lengths):
        ref = hf_logits[b, :n].float()
        mine = got[f"logits.{b}"]
        assert mine.shape == ref.shape, (mine.shape, ref.shape)
        worst = max(worst, float((mine - ref).abs().max()))
        scale = max(scale, float(ref.abs().max()))
    return worst, scale


def summarise(runs, base):
    walls, after = [r["wall_s"] for r in runs], [r["after_load_s"] for r in runs]
    return {"wall_s": statistics.median(walls), "after_load_s": statistics.median(after),
            "pass_minus_startup_s": statistics.median(walls) - base, "runs": runs}


def bench_family(family, a, tmp, shapes):
    path = tmp / family
    t0 = time.perf_counter()
    n_params, layer_types = build_model(family, path, a)
    build_s = time.perf_counter() - t0
    res = {"family": family, "params": n_params, "layer_types": layer_types, "build_s": build_s, "shapes": []}
    print(f"{family}: {n_params / 1e6:.0f}M parameters, built and saved in {build_s:.0f} s", file=sys.stderr)
    variants = {"moelab": {}}
    if a.malloc_row:
        variants["moelab_malloc"] = {"GLIBC_TUNABLES": MALLOC_TUNABLES}
    rng = np.random.default_rng(0)
    one = tmp / "one.json"
    one.write_text(json.dumps({"input_ids": [[1]]}))
    # start-up + load: the same command on one token (twice; the smaller, page cache warm)
    base = min(moelab_run(a, path, one, 1, ["--top", "1"])["wall_s"] for _ in range(2))
    res["moelab_startup_load_s"] = base
    for B, T in shapes:
        lengths = [T] * B
        ids = rng.integers(1, a.vocab, size=(B, T)).tolist()
        ids_json = tmp / "ids.json"
        ids_json.write_text(json.dumps({"input_ids": ids}))
        hf, hf_logits = hf_forward(path, ids, lengths, a)
        print(f"  {B}x{T} transformers: {json.dumps(hf)}", file=sys.stderr)
        runs = {k: [] for k in variants}
        for _ in range(a.repeat):  # the variants alternating, so that load drifts hit both alike
            for k, env in variants.items():
                runs[k].append(moelab_run(a, path, ids_json, B, ["--top", "1"], env))
        out = tmp / "logits.safetensors"
        moelab_run(a, path, ids_json, B, ["--out", str(out)])
        worst, scale = compare(hf_logits, out, lengths)
        out.unlink()
        del hf_logits
        row = {"batch": B, "seq_len": T, "tokens": B * T, "transformers": hf,
               **{k: summarise(r, base) for k, r in runs.items()},
               "max_abs_logit_diff": worst, "max_abs_logit": scale}
        for k in variants:
            print(f"  {B}x{T} {k}: {json.dumps(row[k])}", file=sys.stderr)
        print(f"  {B}x{T} max |logit diff| {worst:.2e} (max |logit| {scale:.2f})", file=sys.stderr)
        res["shapes"].append(row)
    shutil.rmtree(path, ignore_errors=True)
    return res


def sgemm_peak(a, n=2048, seconds=3.0):
    """The machine's float32 matmul rate with these threads: torch.mm on [n, n] x [n, n], median
    of runs over `seconds`."""
    torch.set_num_threads(a.threads)
    x, y = torch.randn(n, n), torch.randn(n, n)
    torch.mm(x, y)
    wait_idle(a.wait_idle)
    rates, t_end = [], time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        torch.mm(x, y)
        rates.append(2 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates)


def matmul_gflop(a, layer_types, tokens):
    """GFLOP of the pass's weight matmuls (projections, router, the k routed and the shared
    expert, lm_head; not the token mixing inside attention and the delta rule) for `tokens` tokens."""
    D, F = a.hidden, a.moe_inter
    lin_k, lin_v = a.linear_key_heads * a.linear_head_dim, a.linear_value_heads * a.linear_head_dim
    linear = D * (2 * lin_k + 2 * lin_v + 2 * a.linear_value_heads) + lin_v * D  # in_proj qkvz + ba, out_proj
    full = D * (2 * a.heads * a.head_dim + 2 * a.kv_heads * a.head_dim) + a.heads * a.head_dim * D  # q+gate, k, v, o
    moe = D * a.experts + (a.top_k + 1) * 3 * D * F + D  # router, routed + shared experts, shared gate
    macs = sum(linear if t == "linear_attention" else full for t in layer_types) + len(layer_types) * moe + D * a.vocab
    return 2 * macs * tokens / 1e9


def report(results, a):
    m = results["machine"]
    lines = [f"Machine: {m['cpus']} CPUs, {m['platform']}; {a.threads} threads (torch.set_num_threads / "
             f"OMP_NUM_THREADS); torch {torch.__version__}, transformers {m['transformers']}; load average "
             f"{m['loadavg_at_start']:.1f} at start, {m['loadavg_at_end']:.1f} at end; other processes' CPU during "
             f"the timed passes: at most {m['max_others_cpu_s']:.1f} core-s in one pass; torch.mm float32 peak "
             f"(2048^3, same threads): {m.get('sgemm_gflops', float('nan')):.0f} GFLOP/s.", ""]
    for r in results["families"]:
        hf0 = r["shapes"][0]["transformers"]
        lines.append(f"- {NAMES[r['family']]}: {r['params'] / 1e6:.0f}M parameters, layers "
                     f"{', '.join('linear' if t == 'linear_attention' else 'full' for t in r['layer_types'])}; "
                     f"transformers: experts `{hf0['experts_implementation']}`, attention "
                     f"`{hf0['attn_implementation']}`, delta rule: {hf0['delta_rule']}; load {hf0['load_s']:.1f} s. "
                     f"moelab start-up + load (1-token process): {r['moelab_startup_load_s']:.2f} s. Weight "
                     f"matmuls: {matmul_gflop(a, r['layer_types'], 1) * 1e3:.0f} MFLOP per token.")
        for sh in r["shapes"]:
            parts = sh["transformers"].get("parts_s")
            if parts:
                lines.append(f"  transformers' pass on {sh['batch']} x {sh['seq_len']} by part (forward hooks, one more "
                             f"warm pass, {parts['total']:.2f} s): " +
                             ", ".join(f"{k} {v:.2f} s" for k, v in parts.items() if k != "total") + ".")
    lines += ["", "| family | batch x tokens | tool | pass s | tok/s | moelab process s | moelab process - 1-token "
              "process s | transformers warm / this (speed-up) | weight-matmul GFLOP/s | max abs logit diff "
              "(max abs logit) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["families"]:
        for s in r["shapes"]:
            h, n = s["transformers"], s["tokens"]
            gf = matmul_gflop(a, r["layer_types"], n)
            bt = f"{s['batch']} x {s['seq_len']}"
            diff = f"{s['max_abs_logit_diff']:.1e} ({s['max_abs_logit']:.2f})"
            lines.append(f"| {r['family']} | {bt} | transformers, warm (median of {len(h['passes_s']) - 1}) | "
                         f"{h['pass_s']:.2f} | {n / h['pass_s']:.0f} | | | 1.00x | {gf / h['pass_s']:.0f} | |")
            lines.append(f"| {r['family']} | {bt} | transformers, first pass | {h['first_pass_s']:.2f} | "
                         f"{n / h['first_pass_s']:.0f} | | | {h['pass_s'] / h['first_pass_s']:.2f}x | "
                         f"{gf / h['first_pass_s']:.0f} | |")
            for k, label in (("moelab", "moelab (log: loaded -> exit)"),
                             ("moelab_malloc", "moelab, malloc thresholds as calibrate/eval (log)")):
                if k not in s:
                    continue
                mo = s[k]
                lines.append(f"| {r['family']} | {bt} | {label} | {mo['after_load_s']:.2f} | "
                             f"{n / mo['after_load_s']:.0f} | {mo['wall_s']:.2f} | {mo['pass_minus_startup_s']:.2f} | "
                             f"**{h['pass_s'] / mo['after_load_s']:.2f}x** | {gf / mo['after_load_s']:.0f} | "
                             f"{diff if k == 'moelab' else ''} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moelab", type=pathlib.Path, default=ROOT / "build" / "runner" / "moelab")
    ap.add_argument("--family", choices=[*FAMILIES, "both"], default="both")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="timed passes per tool (transformers after a warm-up)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--shapes", default=None, help="BxT,BxT,...: several batch shapes instead of --batch x --seq-len")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--full-every", type=int, default=4, help="every N-th layer full attention, the rest Gated DeltaNet")
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=256)
    ap.add_argument("--linear-key-heads", type=int, default=16)
    ap.add_argument("--linear-value-heads", type=int, default=32)
    ap.add_argument("--linear-head-dim", type=int, default=128)
    ap.add_argument("--experts", type=int, default=64)
    ap.add_argument("--top-k", type=int, default=8)
    ap.add_argument("--moe-inter", type=int, default=512, help="routed and shared expert intermediate size")
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--malloc-row", action=argparse.BooleanOptionalAction, default=True,
                    help="also time moelab with glibc's malloc thresholds set as calibrate/eval/generate set them "
                         "(jobs::reuse_freed_blocks; GLIBC_TUNABLES)")
    ap.add_argument("--breakdown", action=argparse.BooleanOptionalAction, default=True,
                    help="one more transformers pass timing its parts with forward hooks (and the delta rule)")
    ap.add_argument("--wait-idle", type=float, default=0,
                    help="before each timed pass, wait up to this many seconds for the machine to be idle")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, not the machine")
    ap.add_argument("--json", type=pathlib.Path)
    ap.add_argument("--report-only", type=pathlib.Path, help="print the report of a saved --json and exit")
    a = ap.parse_args()
    if a.report_only:
        results = json.loads(a.report_only.read_text())
        saved = argparse.Namespace(**{k: int(v) if v.isdigit() else v for k, v in results["args"].items()})
        print(report(results, saved))
        return
    a.moelab = a.moelab.resolve()
    if a.quick:
        a.hidden, a.heads, a.kv_heads, a.head_dim, a.linear_key_heads, a.linear_value_heads = 128, 4, 2, 32, 2, 4
        a.linear_head_dim, a.experts, a.top_k, a.moe_inter, a.vocab, a.repeat = 32, 8, 2, 64, 1024, 1
        a.batch, a.seq_len = 2, 150
    shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes.split(",")] if a.shapes else [(a.batch, a.seq_len)]
    import transformers
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "threads": a.threads,
                           "transformers": transformers.__version__, "loadavg_at_start": os.getloadavg()[0]},
               "args": {k: str(v) for k, v in vars(a).items()}, "families": []}
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="moelab-hybrid-"))
    try:
        for family in (FAMILIES if a.family == "both" else (a.family,)):
            results["families"].append(bench_family(family, a, tmp, shapes))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["machine"]["sgemm_gflops"] = sgemm_peak(a)
    results["machine"]["loadavg_at_end"] = os.getloadavg()[0]
    results["machine"]["max_others_cpu_s"] = max(
        [o for r in results["families"] for s in r["shapes"] for o in s["transformers"]["others_cpu_s"]] +
        [x["others_cpu_s"] for r in results["families"] for s in r["shapes"] for k in ("moelab", "moelab_malloc")
         if k in s for x in s[k]["runs"]])
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    print(report(results, a))


if __name__ == "__main__":
    main()
