#include "core/hf/text_part.h"

namespace moelab::hf {

const TextPart* text_part_of(const nlohmann::json& config) {
  static const std::vector<TextPart> parts = {
      // transformers models/qwen3_5_moe/modeling_qwen3_5_moe.py: Qwen3_5MoeModel holds
      // `visual` and `language_model`; lm_head sits outside both.
      {"Qwen3_5MoeForConditionalGeneration", "Qwen3_5MoeForCausalLM", "model.language_model.", "model.",
       {"model.visual."}},
  };
  if (!config.is_object() || !config.contains("architectures") || !config["architectures"].is_array() ||
      config["architectures"].empty() || !config["architectures"][0].is_string())
    return nullptr;
  const std::string arch = config["architectures"][0].get<std::string>();
  for (const auto& p : parts)
    if (p.architecture == arch) return &p;
  return nullptr;
}

}  // namespace moelab::hf
