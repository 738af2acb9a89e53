// Multimodal checkpoints whose text model moelab reads as the text-only family
// (Qwen3.5-MoE: Qwen3_5MoeForConditionalGeneration, the layout the Hub publishes). Its
// config.json nests the text model's fields under "text_config" and its tensors name the
// decoder "model.language_model.*" beside a vision tower "model.visual.*".
// hf::read_model_config reads text_config as the text family's config.json, and
// hf::Checkpoint shows the decoder's tensors under the text model's names (the prefix
// replaced) and hides the vision tower's: the loader, pruning and the writers see a
// text-only checkpoint, and what they write is the text model (e.g. Qwen3_5MoeForCausalLM,
// which transformers' AutoModelForCausalLM loads); the vision tower is not written.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace moelab::hf {

struct TextPart {
  std::string architecture;             // the multimodal config's, e.g. "Qwen3_5MoeForConditionalGeneration"
  std::string text_architecture;        // the text model's, e.g. "Qwen3_5MoeForCausalLM"
  std::string stored_prefix;            // "model.language_model."
  std::string text_prefix;              // "model."
  std::vector<std::string> other_parts; // tensors of the other modalities, hidden: "model.visual."
};

// The entry for a config.json (its architectures[0]), or null when it is not one of them.
const TextPart* text_part_of(const nlohmann::json& config);

}  // namespace moelab::hf
