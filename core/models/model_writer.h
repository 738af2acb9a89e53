// MoeModel -> Hugging Face model directory that transformers loads.
//
// Tensors are written with the checkpoint's original per-expert names (what
// transformers' save_pretrained writes by default), in the checkpoint's storage
// dtype unless told otherwise, sharded past `max_shard_bytes` with an index.
// Expert counts go into config.json (num_local_experts / num_experts). A model
// whose layers kept different numbers of experts cannot be described by the stock
// config (one scalar count): then config.json also gets
// `moelab_num_experts_per_layer` and an `auto_map` to modeling_moelab.py, a small
// subclass of the transformers family class that sizes each layer from that list;
// load it with AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True).
// A compressed-experts model (moelab compress) also gets `moelab_compressed_experts`
// {"main", "variant"} and per MoE layer `model.layers.{L}.mlp.ces` [E, 3, max(D, F)]
// (official) or `model.layers.{L}.mlp.experts.theta` [E, D] (moelab-v1);
// core/models/compressed_experts.h. transformers ignores both: it would run the
// uncompressed model and warn about the extra tensor.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string>

#include "core/models/moe_model.h"

namespace moelab::models {

// The dtype a model is saved in by default: config.json's torch_dtype (bfloat16,
// float16), float32 for anything else.
at::ScalarType dtype_from_config(const std::string& torch_dtype);

struct SaveOptions {
  std::optional<at::ScalarType> dtype;  // default: config.json's torch_dtype (dtype_from_config)
  int64_t max_shard_bytes = int64_t(5) << 30;
  bool overwrite = false;
};

void save_model(const MoeModel& model, const std::string& out_dir, const SaveOptions& opts = {});

}  // namespace moelab::models
