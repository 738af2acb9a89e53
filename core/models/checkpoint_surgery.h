// Pruning as surgery on checkpoint files: the pruned model directory is written
// straight from the memory-mapped input, tensor by tensor, without loading the model.
//
//   - tensors of kept experts (per-expert layout: model.layers.{L}...experts.{E}...)
//     are copied byte for byte and renumbered 0..kept-1 in their original order;
//   - tensors whose first axis indexes a layer's routed experts (router [E, D],
//     DeepSeek-V3 e_score_correction_bias [E], fused experts [E, 2F, D] / [E, D, F],
//     compressed-experts ces [E, 3, W] or theta [E, D], gpt-oss router bias and experts
//     (core/models/families/gpt_oss.cpp)) keep their kept experts' rows;
//   - dropped experts' tensors are skipped; every other tensor is copied as is.
// Tensors keep their stored dtype (bytes identical) unless `dtype` asks for a
// conversion (floating-point tensors only, converted one at a time). Output shards
// follow the input's: one output file per input file under the same name, with
// model.safetensors.index.json when the input has one. Peak memory: about one
// tensor (the largest sliced one); the input pages a tensor used are dropped once
// it is written. The directory is built under a temporary name and renamed when
// complete (AtomicDir): a full disk leaves nothing.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/hf/model_config.h"
#include "core/models/expert_merging.h"
#include "core/models/family.h"

namespace moelab::models {

struct SurgeryOptions {
  std::optional<at::ScalarType> dtype;  // convert floating-point tensors to this dtype
  bool overwrite = false;
};

// Whether a checkpoint's files can be edited tensor by tensor: not quantised (an MXFP4
// gpt-oss checkpoint is loaded and saved dequantised: moelab writes no MXFP4) and, when
// `generic_experts` (merge, compress), in the per-expert or fused layouts rather than a
// family's own (gpt-oss). Pruning by surgery knows gpt-oss' layout too.
bool editable_by_surgery(const hf::ModelConfig& config, bool generic_experts);

// input: the input's config (expert counts before pruning; input.path locates the
// checkpoint). pruned: the output's config (expert counts, top-k, grouped routing
// after pruning, as remove_experts left them). keep_of: for each MoE layer that loses
// experts, the kept expert ids (sorted, indices into the input's experts).
// Throws InputError naming the file and tensor when a tensor that should index
// experts has another first axis.
void prune_checkpoint(const hf::ModelConfig& input, const hf::ModelConfig& pruned, const FamilySpec& family,
                      const std::map<int64_t, std::vector<int64_t>>& keep_of, const std::string& out_dir,
                      const SurgeryOptions& opts = {});

// Compressing as surgery (moelab compress): every tensor copied as stored, and each MoE
// layer's compressed-expert vectors (all ones: core/models/compressed_experts.h; official
// `mlp.ces` [E, 3, W], moelab-v1 `mlp.experts.theta` [E, D]) written right after the
// layer's router in its shard, in the checkpoint's dtype. compressed: the output's
// config (compressed_main and compressed_variant set). Peak memory: one tensor. Not for
// a checkpoint already compressed or a family with a layout of its own: InputError.
void compress_checkpoint(const hf::ModelConfig& input, const hf::ModelConfig& compressed, const FamilySpec& family,
                         const std::string& out_dir, const SurgeryOptions& opts = {});

// Merging as surgery (moelab merge): each listed layer's groups become its experts, in
// group order. A merged expert's gate, up and down tensors are the weighted sum of its
// members' (float64, rounded through float32 to the stored dtype or opts.dtype: the
// values the in-memory merge of a float32-loaded model saves), written in the file and
// place of the group's dominant expert; the members' other tensors are dropped. Tensors
// with one row per expert keep one row per group: the router and its correction bias
// the group's weighted rows (RouterMerge::kAverage) or the dominant's (kDominant), fused
// experts, compressed-expert vectors and theta the weighted rows. merged: the output's
// config (models::merge_experts applied to the model's shell). Peak memory: one group's
// tensors and their float64 sum. Not for families with a layout of their own (gpt-oss):
// InputError.
void merge_checkpoint(const hf::ModelConfig& input, const hf::ModelConfig& merged, const FamilySpec& family,
                      const ExpertMerges& merges, RouterMerge router, const std::string& out_dir,
                      const SurgeryOptions& opts = {});

}  // namespace moelab::models
