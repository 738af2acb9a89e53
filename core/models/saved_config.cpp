#include "core/models/saved_config.h"

#include <nlohmann/json.hpp>

#include "core/common/atomic_output.h"
#include "core/common/log.h"

namespace fs = std::filesystem;

namespace moelab::models {
namespace {

// Remote code for unevenly pruned checkpoints: the stock family class (CLASS) with each
// MoE layer rebuilt at its own expert count (config attribute COUNT) before the weights
// are loaded. Dense layers (count 0) keep their MLP.
const char* kRemoteModeling = R"PY(# Written by moelab: the stock transformers model with a per-layer expert count,
# read from config.moelab_num_experts_per_layer (stock configs hold one count), and MoNE's
# novices (config.moelab_novices_per_layer): a layer's router has a row for each of its
# experts, then one for each novice; a token routed to a novice receives gate x its vector
# (model.layers.L.mlp.experts.novices [N, D]) instead of an expert's output.
import copy

import torch
from transformers import CLASS


def _resize_experts(model, config, count_attr):
    counts = getattr(config, "moelab_num_experts_per_layer", None)
    if counts is None:
        return
    for idx, layer in enumerate(model.model.layers):
        attr = "mlp" if hasattr(layer, "mlp") else "feed_forward"  # Llama-4: feed_forward
        block = getattr(layer, attr)
        if counts[idx] == 0 or not hasattr(block, "experts"):
            continue
        layer_config = copy.copy(config)
        setattr(layer_config, count_attr, counts[idx])
        setattr(layer, attr, type(block)(layer_config))


def _novice_experts(experts_cls, config, real, novices):
    class NoviceExperts(experts_cls):
        def __init__(self):
            super().__init__(config)
            self.novices = torch.nn.Parameter(torch.zeros(novices, config.hidden_size))

        def forward(self, hidden_states, top_k_index, top_k_weights):
            is_novice = top_k_index >= real
            # Novice slots run expert 0 with weight 0 (every experts implementation
            # accepts that; not all skip an out-of-range index), then add their vectors.
            out = super().forward(hidden_states, top_k_index.masked_fill(is_novice, 0),
                                  top_k_weights.masked_fill(is_novice, 0))
            weights = (top_k_weights * is_novice).unsqueeze(-1).to(self.novices.dtype)
            vectors = self.novices[(top_k_index - real).clamp(min=0)]
            return out + (weights * vectors).sum(1).to(out.dtype)

    return NoviceExperts()


def _add_novices(model, config, count_attr):
    novices = getattr(config, "moelab_novices_per_layer", None)
    if not novices:
        return
    counts = getattr(config, "moelab_num_experts_per_layer", None)
    for idx, layer in enumerate(model.model.layers):
        if novices[idx] == 0:
            continue
        attr = "mlp" if hasattr(layer, "mlp") else "feed_forward"
        block = getattr(layer, attr)
        real = counts[idx] if counts is not None else getattr(config, count_attr)
        routed = copy.copy(config)
        setattr(routed, count_attr, real + novices[idx])  # the router's rows
        new_block = type(block)(routed)
        experts_config = copy.copy(config)
        setattr(experts_config, count_attr, real)
        new_block.experts = _novice_experts(type(block.experts), experts_config, real, novices[idx])
        setattr(layer, attr, new_block)


class MoelabCLASS(CLASS):
    def __init__(self, config):
        super().__init__(config)
        _resize_experts(self, config, "COUNT")
        _add_novices(self, config, "COUNT")
        self.post_init()
)PY";

std::string remote_modeling(const std::string& cls, const std::string& count_attr) {
  std::string s = kRemoteModeling;
  for (auto [from, to] : {std::pair<std::string, std::string>{"CLASS", cls}, {"COUNT", count_attr}})
    for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
      s.replace(pos, from.size(), to);
  return s;
}

}  // namespace

std::string dtype_config_name(at::ScalarType t) {
  if (t == at::kBFloat16) return "bfloat16";
  if (t == at::kHalf) return "float16";
  return "float32";
}

void write_saved_config(const fs::path& dir, const hf::ModelConfig& c, const FamilySpec& family,
                        const SavedConfigOptions& opts, const std::string& out_name) {
  nlohmann::json raw = c.raw;
  bool has_count_key = false;
  for (const char* key : {"num_local_experts", "num_experts", "n_routed_experts"})
    if (raw.contains(key)) {
      raw[key] = c.num_routed_experts_max();
      has_count_key = true;
    }
  if (!has_count_key) raw[family.expert_count_key] = c.num_routed_experts_max();
  raw["num_experts_per_tok"] = c.num_experts_per_tok;  // a pruning plan may lower top-k
  if (raw.contains("moe_k")) raw["moe_k"] = c.num_experts_per_tok;  // ERNIE-4.5's spelling of it
  // Grouped routing (DeepSeek): pruning may have had to give up the groups
  // (core/models/expert_surgery.h).
  for (auto [key, value] : {std::pair<const char*, int64_t>{"n_group", c.router.n_group}, {"topk_group", c.router.topk_group}})
    if (raw.contains(key) && !raw[key].is_null()) raw[key] = value;
  // transformers 5 writes "dtype", 4.x "torch_dtype": keep the spelling the file had.
  if (opts.dtype) raw[raw.contains("torch_dtype") && !raw.contains("dtype") ? "torch_dtype" : "dtype"] = *opts.dtype;
  bool uneven = false;
  std::vector<int64_t> counts;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    counts.push_back(c.num_experts_per_layer[l]);
    if (c.is_moe_layer(l) && counts.back() != c.num_routed_experts_max()) uneven = true;
  }
  raw.erase("moelab_num_experts_per_layer");
  raw.erase("moelab_compressed_experts");
  raw.erase("moelab_novices_per_layer");
  if (c.has_novices()) raw["moelab_novices_per_layer"] = c.novices_per_layer;
  if (c.compressed())
    raw["moelab_compressed_experts"] = {{"main", c.compressed_main}, {"variant", c.compressed_variant}};
  raw.erase("auto_map");
  // Dequantised weights (gpt-oss MXFP4 experts loaded by core/models/families/gpt_oss.cpp): the
  // file's quantization_config no longer applies.
  if (opts.dequantised) raw.erase("quantization_config");
  if (uneven || c.has_novices()) {
    if (uneven) raw["moelab_num_experts_per_layer"] = counts;
    const std::string& cls = family.architectures.at(0);
    raw["auto_map"] = {{"AutoModelForCausalLM", "modeling_moelab.Moelab" + cls}};
    write_file_atomic(dir / "modeling_moelab.py", remote_modeling(cls, family.expert_count_key));
    spdlog::warn("{}: {} needs trust_remote_code=True in transformers",
                 uneven ? "layers keep different numbers of experts" : "MoNE novices", out_name);
  }
  if (!c.text_part_of.empty())
    spdlog::warn("{}: the text model of the {} checkpoint ({}); its other modalities are not written", out_name,
                 c.text_part_of, c.architecture);
  write_file_atomic(dir / "config.json", raw.dump(2));
  // Tokenizer and generation files travel with the model.
  const fs::path src = fs::path(c.path).parent_path();
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"})
    if (fs::exists(src / f)) fs::copy_file(src / f, dir / f, fs::copy_options::overwrite_existing);
}

}  // namespace moelab::models
