"""A sharded bfloat16 Mixtral-shaped checkpoint written shard by shard from random
tensors (tests of memory at a scale where holding the model would show)."""
import json

import torch
from safetensors.torch import save_file


def write_bf16_mixtral(out, *, layers=8, experts=16, hidden=512, ffn=1024, vocab=8192, layers_per_shard=2,
                       seed=0):
    """Writes config.json, model-0000i-of-0000n.safetensors and the index; returns the
    total bytes of the tensors."""
    out.mkdir(parents=True)
    g = torch.Generator().manual_seed(seed)
    heads, kv_heads, head_dim = 8, 2, hidden // 8

    def rand(*shape):
        return (torch.randn(*shape, generator=g) * 0.02).to(torch.bfloat16)

    groups = [list(range(i, min(i + layers_per_shard, layers))) for i in range(0, layers, layers_per_shard)]
    n = len(groups)
    weight_map, total = {}, 0
    for s, group in enumerate(groups):
        t = {}
        if s == 0:
            t["model.embed_tokens.weight"] = rand(vocab, hidden)
        for l in group:
            p = f"model.layers.{l}."
            t[p + "input_layernorm.weight"] = torch.ones(hidden, dtype=torch.bfloat16)
            t[p + "post_attention_layernorm.weight"] = torch.ones(hidden, dtype=torch.bfloat16)
            t[p + "self_attn.q_proj.weight"] = rand(heads * head_dim, hidden)
            t[p + "self_attn.k_proj.weight"] = rand(kv_heads * head_dim, hidden)
            t[p + "self_attn.v_proj.weight"] = rand(kv_heads * head_dim, hidden)
            t[p + "self_attn.o_proj.weight"] = rand(hidden, heads * head_dim)
            t[p + "block_sparse_moe.gate.weight"] = rand(experts, hidden)
            for e in range(experts):
                q = f"{p}block_sparse_moe.experts.{e}."
                t[q + "w1.weight"] = rand(ffn, hidden)
                t[q + "w3.weight"] = rand(ffn, hidden)
                t[q + "w2.weight"] = rand(hidden, ffn)
        if s == n - 1:
            t["model.norm.weight"] = torch.ones(hidden, dtype=torch.bfloat16)
            t["lm_head.weight"] = rand(vocab, hidden)
        fname = f"model-{s + 1:05d}-of-{n:05d}.safetensors"
        save_file(t, str(out / fname), metadata={"format": "pt"})
        for name, x in t.items():
            weight_map[name] = fname
            total += x.numel() * x.element_size()
        del t
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (out / "config.json").write_text(json.dumps({
        "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "vocab_size": vocab,
        "hidden_size": hidden, "intermediate_size": ffn, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "head_dim": head_dim,
        "num_local_experts": experts, "num_experts_per_tok": 2, "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5, "rope_theta": 1e6, "hidden_act": "silu", "tie_word_embeddings": False,
        "sliding_window": None, "torch_dtype": "bfloat16"}, indent=2))
    return total
