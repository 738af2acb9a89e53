#include "core/models/sparse_layer_map.h"

#include <algorithm>

namespace moelab::models {

std::vector<int64_t> qwen_moe_layer_experts(const hf::JsonFields& f, const hf::ModelConfig& c, int64_t experts) {
  const int64_t step = f.opt_int("decoder_sparse_step").value_or(1);
  if (step <= 0) f.fail("decoder_sparse_step", "must be a positive integer");
  std::vector<int64_t> mlp_only;
  if (f.has("mlp_only_layers")) {
    if (!c.raw["mlp_only_layers"].is_array()) f.fail("mlp_only_layers", "must be a list of layer indices");
    for (const auto& v : c.raw["mlp_only_layers"]) {
      if (!v.is_number_integer()) f.fail("mlp_only_layers", "must be a list of layer indices");
      mlp_only.push_back(v.get<int64_t>());
    }
  }
  std::vector<int64_t> out(c.num_hidden_layers, 0);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const bool dense = std::find(mlp_only.begin(), mlp_only.end(), l) != mlp_only.end() || (l + 1) % step != 0;
    out[l] = dense ? 0 : experts;
  }
  return out;
}

}  // namespace moelab::models
