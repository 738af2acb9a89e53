// Loading a model one decoder layer at a time (moelab calibrate --layerwise): a
// "shell" that holds everything but the weights, then each layer's weights on
// demand, read from the memory-mapped safetensors and owned by the process (the
// file's pages are dropped once copied), so that freeing the layer frees its memory.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "core/models/moe_model.h"

namespace moelab::models {

// The whole checkpoint is validated as load_model does (every tensor present, with
// its shape; none left over), but no weight is read: embeddings, final norm and
// lm_head stay undefined; each layer's LayerWeights says what the layer is (moe /
// shared / mlp set as load_model sets them) and its MoE part carries the router
// [E, D], gate_up [E_local, 2F, D] and down [E_local, D, F] as meta tensors (shapes
// only, no memory), first_local and original_ids, so that statistic collectors can be
// built from the shell. RoPE tables are set. opts.weights is ignored.
MoeModel load_model_shell(const std::string& dir, const LoadOptions& opts);

// Reads layer `layer`'s weights (this rank's experts only, under the shell's
// dispatcher) into m.layers[layer], replacing the shell's placeholders. Every
// tensor is a copy in opts.dtype on opts.device.
void load_layer(MoeModel& m, const std::string& dir, int64_t layer, const LoadOptions& opts);

// Reads the final norm (with its LayerNorm bias), the lm_head (the embedding matrix
// when tied) and its bias into the shell, as load_model does, copies owned by the
// process; drop_output_head frees them again.
void load_output_head(MoeModel& m, const std::string& dir, const LoadOptions& opts);
void drop_output_head(MoeModel& m);

// Bytes that layer `layer`'s weights take in this process (its share of the routed
// experts under the model's dispatcher) in the compute dtype: what load_layer adds.
int64_t layer_weight_bytes(const MoeModel& m, const std::string& dir, int64_t layer);

// Starts reading layer `layer`'s tensors (this rank's share, as load_layer reads them)
// into the page cache (hf::SafetensorsFile::prefetch), so that the next load_layer
// finds them there instead of waiting on the disk. Nothing is copied or kept
// resident by this process; safe to call from another thread while layers run.
void prefetch_layer(const MoeModel& m, const std::string& dir, int64_t layer);

// The embeddings of a batch: input_ids [B, T] int64 -> [B, T, D] in m.dtype on the
// CPU, read from the mapped embedding rows (the matrix itself is never copied whole).
at::Tensor embed_from_checkpoint(const MoeModel& m, const std::string& dir, const at::Tensor& input_ids_BT);

}  // namespace moelab::models
