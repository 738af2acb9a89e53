#!/usr/bin/env python3
"""What users run instead of `moelab calibrate`: a transformers model with forward hooks
collecting per-expert statistics (the approach of REAP's observer and llm-compressor's
REAP port; see ../shared/reference/field-notes.md section 2).

Collects, per MoE layer, the sums moelab's `usage`, `act_norms` and `out_norms` groups
hold (results/stats_schema.md), in float64:
  tokens_E, gate_sum_E, act_norm_sum_E, act_norm_sq_sum_E, out_norm_sum_E, gate_out_norm_sum_E
A forward hook on each layer's fused experts module (transformers 5: gate_up_proj [E, 2F, D],
down_proj [E, D, F]) receives the block's tokens, chosen experts and gate weights, and
recomputes each expert's activation a = act(x Wg^T) * (x Wu^T) and output f = a Wd^T:
  --mode routed       on the tokens routed to the expert (llm-compressor style; the
                      experts' FLOPs are spent twice: the model's forward and the hook)
  --mode all-experts  on every token, then keeps the routed rows (REAP's observer,
                      `activations = zeros(E, T, H)`: E/k times the experts' FLOPs)
Writes an HDF5 file with moelab's layout (layer_NNN/<dataset>) and prints one JSON line
with timings. Sequences come from a moelab calibration JSON ({"input_ids": [[...], ...]}).

  python3 bench/hf_hooks_calibrate.py MODEL_DIR --data cal.json --batch-size 8 --out hf.h5
"""
import argparse
import json
import time

import h5py
import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--data", required=True)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mode", choices=["routed", "all-experts"], default="routed")
    ap.add_argument("--experts-implementation", default=None,
                    help="transformers' experts kernel (eager, grouped_mm, batched_mm); default: transformers' choice")
    args = ap.parse_args()

    from transformers import AutoModelForCausalLM
    t0 = time.perf_counter()
    kw = {"dtype": torch.float32}
    if args.experts_implementation:
        kw["experts_implementation"] = args.experts_implementation
    model = AutoModelForCausalLM.from_pretrained(args.model, **kw).eval()
    t_load = time.perf_counter() - t0

    stats = {}
    hooks = []
    for idx, layer in enumerate(model.model.layers):
        experts = getattr(getattr(layer, "mlp", None), "experts", None)
        if experts is None or not hasattr(experts, "gate_up_proj"):
            continue
        E = experts.gate_up_proj.shape[0]
        s = {k: torch.zeros(E, dtype=torch.float64) for k in
             ("gate_sum_E", "act_norm_sum_E", "act_norm_sq_sum_E", "out_norm_sum_E", "gate_out_norm_sum_E")}
        s["tokens_E"] = torch.zeros(E, dtype=torch.int64)
        stats[idx] = s

        def hook(module, inputs, _output, s=s):
            x, top_k_index, top_k_weights = inputs[0], inputs[1], inputs[2]
            n_experts = module.gate_up_proj.shape[0]
            for e in range(n_experts):
                tok, slot = torch.where(top_k_index == e)
                if tok.numel() == 0:
                    continue
                if args.mode == "all-experts":
                    gate, up = torch.nn.functional.linear(x, module.gate_up_proj[e]).chunk(2, dim=-1)
                    a_all = module.act_fn(gate) * up
                    f_all = torch.nn.functional.linear(a_all, module.down_proj[e])
                    a, f = a_all[tok], f_all[tok]
                else:
                    gate, up = torch.nn.functional.linear(x[tok], module.gate_up_proj[e]).chunk(2, dim=-1)
                    a = module.act_fn(gate) * up
                    f = torch.nn.functional.linear(a, module.down_proj[e])
                g = top_k_weights[tok, slot].double()
                an = a.norm(dim=-1).double()
                fn = f.norm(dim=-1).double()
                s["tokens_E"][e] += tok.numel()
                s["gate_sum_E"][e] += g.sum()
                s["act_norm_sum_E"][e] += an.sum()
                s["act_norm_sq_sum_E"][e] += (an * an).sum()
                s["out_norm_sum_E"][e] += fn.sum()
                s["gate_out_norm_sum_E"][e] += (g * fn).sum()

        hooks.append(experts.register_forward_hook(hook))

    with open(args.data) as fh:
        ids = torch.tensor(json.load(fh)["input_ids"], dtype=torch.int64)
    t1 = time.perf_counter()
    with torch.inference_mode():
        for b in range(0, ids.shape[0], args.batch_size):
            model(input_ids=ids[b:b + args.batch_size], use_cache=False)
    t_pass = time.perf_counter() - t1

    with h5py.File(args.out, "w") as f:
        for idx, s in stats.items():
            grp = f.create_group(f"layer_{idx:03d}")
            for k, v in s.items():
                grp[k] = v.numpy()
    print(json.dumps({"load_s": t_load, "pass_s": t_pass, "tokens": int(ids.numel()),
                      "experts_implementation": getattr(model.config, "_experts_implementation", None),
                      "threads": torch.get_num_threads(), "mode": args.mode}))


if __name__ == "__main__":
    main()
