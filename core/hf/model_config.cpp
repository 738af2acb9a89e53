#include "core/hf/model_config.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "core/common/error.h"
#include "core/hf/json_fields.h"
#include "core/hf/text_part.h"

namespace moelab::hf {
namespace {

// RoPE settings: transformers 5 keeps them in `rope_parameters`; 4.x used a top-level
// `rope_theta` plus an optional `rope_scaling` dict (`type` or `rope_type`).
RopeConfig read_rope(const nlohmann::json& raw, const std::string& file, int64_t max_pos) {
  RopeConfig r;
  JsonFields top(raw, file);
  r.theta = top.number("rope_theta", 10000.0);
  // transformers 4.x configs keep it top-level (GLM-4.5's config.json), 5.x in rope_parameters.
  r.partial_rotary_factor = top.number("partial_rotary_factor", 1.0);
  if (!(r.partial_rotary_factor > 0 && r.partial_rotary_factor <= 1))
    top.fail("partial_rotary_factor", "must be in (0, 1]");
  const nlohmann::json* params = nullptr;
  std::string where;
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    if (raw.contains(key) && raw[key].is_object()) {
      params = &raw[key];
      where = key;
      break;
    }
  }
  if (!params) return r;
  JsonFields p(*params, file + " (" + where + ")");
  r.theta = p.number("rope_theta", r.theta);
  r.type = p.string("rope_type", p.string("type", "default"));
  r.partial_rotary_factor = p.number("partial_rotary_factor", r.partial_rotary_factor);
  if (!(r.partial_rotary_factor > 0 && r.partial_rotary_factor <= 1))
    p.fail("partial_rotary_factor", "must be in (0, 1]");
  if (r.type == "default") return r;
  if (r.type != "linear" && r.type != "llama3" && r.type != "yarn" && r.type != "longrope")
    p.fail("rope_type", "\"" + r.type + "\" is not supported (supported: default, linear, llama3, yarn, longrope)");
  r.factor = p.number("factor", 1.0);
  r.original_max_position_embeddings = p.opt_int("original_max_position_embeddings").value_or(max_pos);
  if (r.type == "llama3") {
    r.low_freq_factor = p.number("low_freq_factor", 1.0);
    r.high_freq_factor = p.number("high_freq_factor", 4.0);
  } else if (r.type == "yarn") {
    r.attention_factor = p.opt_number("attention_factor");
    r.mscale = p.opt_number("mscale");
    r.mscale_all_dim = p.opt_number("mscale_all_dim");
    if (auto v = p.opt_number("beta_fast"); v && *v != 0) r.beta_fast = *v;
    if (auto v = p.opt_number("beta_slow"); v && *v != 0) r.beta_slow = *v;
    r.truncate = p.boolean("truncate", true);
    if (!p.has("factor")) r.factor = double(max_pos) / double(r.original_max_position_embeddings);
  } else if (r.type == "longrope") {
    // Both factor lists are required (transformers reads both); their length is checked
    // against the rotary width in read_model_config.
    for (auto [key, out] : {std::pair<const char*, std::vector<double>*>{"short_factor", &r.short_factor},
                            {"long_factor", &r.long_factor}}) {
      const auto& v = (*params).contains(key) ? (*params)[key] : nlohmann::json();
      if (!v.is_array() || v.empty()) p.fail(key, "must be a list of positive numbers (longrope)");
      for (const auto& x : v) {
        if (!x.is_number() || !(x.get<double>() > 0)) p.fail(key, "must be a list of positive numbers (longrope)");
        out->push_back(x.get<double>());
      }
    }
    if (!p.has("original_max_position_embeddings") && !top.has("original_max_position_embeddings"))
      p.fail("original_max_position_embeddings", "is required by longrope");
    r.original_max_position_embeddings = p.opt_int("original_max_position_embeddings")
                                             .value_or(top.opt_int("original_max_position_embeddings").value_or(0));
    if (r.original_max_position_embeddings <= 0) p.fail("original_max_position_embeddings", "must be a positive integer");
    if (!p.has("factor")) r.factor = double(max_pos) / double(r.original_max_position_embeddings);
    r.attention_factor = p.opt_number("attention_factor");
    r.short_mscale = p.opt_number("short_mscale");
    r.long_mscale = p.opt_number("long_mscale");
  }
  return r;
}

}  // namespace

const char* to_string(RouterScoring scoring) { return scoring == RouterScoring::kSigmoid ? "sigmoid" : "softmax"; }

const char* to_string(TopKMethod method) {
  switch (method) {
    case TopKMethod::kGreedy: return "greedy";
    case TopKMethod::kGroupLimitedGreedy: return "group_limited_greedy";
    case TopKMethod::kNoauxTc: return "noaux_tc";
    case TopKMethod::kSparsemixer: return "sparsemixer";
  }
  return "greedy";
}

std::optional<TopKMethod> parse_topk_method(const std::string& name) {
  for (TopKMethod m : {TopKMethod::kGreedy, TopKMethod::kGroupLimitedGreedy, TopKMethod::kNoauxTc, TopKMethod::kSparsemixer})
    if (name == to_string(m)) return m;
  return std::nullopt;
}

std::string RouterTraits::describe() const {
  std::string d = std::string(to_string(scoring)) + " scores, " + to_string(topk_method);
  if (grouped()) d += " over " + std::to_string(topk_group) + " of " + std::to_string(n_group) + " groups";
  if (correction_bias) d += ", correction bias";
  if (gate_on_input) d += ", gates on the experts' input";
  char scale[32];
  std::snprintf(scale, sizeof scale, "%g", scaling_factor);
  return d + ", routed_scaling_factor " + scale;
}


std::map<int64_t, int64_t> ModelConfig::moe_layer_experts() const {
  std::map<int64_t, int64_t> out;
  for (int64_t l = 0; l < int64_t(num_experts_per_layer.size()); ++l)
    if (num_experts_per_layer[l] > 0) out[l] = num_experts_per_layer[l];
  return out;
}

int64_t ModelConfig::num_routed_experts_max() const {
  int64_t m = 0;
  for (auto e : num_experts_per_layer) m = std::max(m, e);
  return m;
}

ModelConfig read_model_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(path, "cannot open config.json");
  std::stringstream ss;
  ss << in.rdbuf();
  ModelConfig c;
  c.path = path;
  try {
    c.raw = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    throw InputError(path, std::string("not valid JSON: ") + e.what());
  }
  if (!c.raw.is_object()) throw InputError(path, "not a JSON object");
  // The text model of a multimodal checkpoint moelab reads (core/hf/text_part.h): text_config is
  // its config.json; the wrapper's dtype and tied embeddings apply to it.
  if (const TextPart* part = text_part_of(c.raw)) {
    JsonFields outer(c.raw, path);
    if (!c.raw.contains("text_config") || !c.raw["text_config"].is_object())
      outer.fail("text_config", "must be an object (the text model's config of " + part->architecture + ")");
    nlohmann::json text = c.raw["text_config"];
    for (const char* key : {"dtype", "torch_dtype", "tie_word_embeddings"})
      if (c.raw.contains(key) && !text.contains(key)) text[key] = c.raw[key];
    text["architectures"] = nlohmann::json::array({part->text_architecture});
    c.text_part_of = part->architecture;
    c.raw = std::move(text);
  }
  JsonFields f(c.raw, path);
  if (c.raw.contains("architectures") && c.raw["architectures"].is_array() && !c.raw["architectures"].empty() &&
      c.raw["architectures"][0].is_string())
    c.architecture = c.raw["architectures"][0].get<std::string>();
  c.model_type = f.string("model_type", "");
  if (c.architecture.empty() && c.model_type.empty())
    throw InputError(path, "neither \"architectures\" nor \"model_type\" is set: cannot tell the model family");

  // A multimodal config (Llama4ForConditionalGeneration: text_config, vision_config,
  // weights under language_model.*): only text models are read.
  if (c.raw.contains("text_config") && c.raw["text_config"].is_object())
    f.fail("text_config", "multimodal checkpoints (" + (c.architecture.empty() ? c.model_type : c.architecture) +
                              ") are not supported: moelab reads text models only (for Llama-4: Llama4ForCausalLM, "
                              "model_type \"llama4_text\")");
  c.vocab_size = f.positive_int("vocab_size");
  c.hidden_size = f.positive_int("hidden_size");
  c.num_hidden_layers = f.positive_int("num_hidden_layers");
  c.num_attention_heads = f.positive_int("num_attention_heads");
  c.num_key_value_heads = f.opt_int("num_key_value_heads").value_or(c.num_attention_heads);
  if (c.num_key_value_heads <= 0 || c.num_attention_heads % c.num_key_value_heads != 0)
    f.fail("num_key_value_heads", "must divide num_attention_heads (" + std::to_string(c.num_attention_heads) + ")");
  c.head_dim = f.opt_int("head_dim").value_or(c.hidden_size / c.num_attention_heads);
  if (c.head_dim <= 0 || c.head_dim % 2 != 0) f.fail("head_dim", "must be a positive even integer");
  c.hidden_act = f.string("hidden_act", "silu");
  c.rms_norm_eps = f.number("rms_norm_eps", 1e-6);
  c.max_position_embeddings = f.opt_int("max_position_embeddings").value_or(4096);
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", false);
  c.attn.bias = f.boolean("attention_bias", false);
  c.attn.out_bias = c.attn.bias;
  c.torch_dtype = f.string("dtype", f.string("torch_dtype", "float32"));
  c.rope = read_rope(c.raw, path, c.max_position_embeddings);
  if (c.rope.type == "longrope") {
    const size_t half = size_t(int64_t(c.head_dim * c.rope.partial_rotary_factor) / 2);
    for (auto [key, v] : {std::pair<const char*, const std::vector<double>*>{"short_factor", &c.rope.short_factor},
                          {"long_factor", &c.rope.long_factor}})
      if (v->size() != half)
        throw InputError(path, std::string("field \"") + key + "\" of the RoPE parameters must list " +
                                   std::to_string(half) + " factors (half the rotary width), got " +
                                   std::to_string(v->size()));
  }
  if (auto sw = f.opt_int("sliding_window"); sw && *sw > 0) c.attn.sliding_window = *sw;
  if (c.raw.contains("layer_types") && !c.raw["layer_types"].is_null()) {
    const auto& v = c.raw["layer_types"];
    if (!v.is_array() || int64_t(v.size()) != c.num_hidden_layers)
      f.fail("layer_types", "must list one attention type per layer (" + std::to_string(c.num_hidden_layers) + ")");
    bool chunked = false, linear = false;
    for (const auto& t : v) {
      if (!t.is_string() || (t != "full_attention" && t != "sliding_attention" && t != "chunked_attention" &&
                             t != "linear_attention"))
        f.fail("layer_types", "entries must be \"full_attention\", \"sliding_attention\", \"chunked_attention\" "
                              "or \"linear_attention\"");
      c.attn.sliding_layers.push_back(t == "sliding_attention");
      c.attn.chunked_layers.push_back(t == "chunked_attention");
      c.linear_layers.push_back(t == "linear_attention");
      chunked = chunked || t == "chunked_attention";
      linear = linear || t == "linear_attention";
    }
    // Gated DeltaNet layers: the family reads the linear-attention sizes;
    // models::load_config refuses linear layers that no family reading set up.
    if (!linear) c.linear_layers.clear();
    // Llama-4's chunked attention: the family reads attention_chunk_size;
    // models::load_config refuses chunked layers that no family reading set up.
    if (!chunked) c.attn.chunked_layers.clear();
  }
  if (c.raw.contains("moelab_skip_beta") && !c.raw["moelab_skip_beta"].is_null()) {
    const auto& v = c.raw["moelab_skip_beta"];
    if (!v.is_array() || int64_t(v.size()) != c.num_hidden_layers)
      f.fail("moelab_skip_beta", "must list one skipping threshold per layer (" +
                                     std::to_string(c.num_hidden_layers) + ")");
    for (const auto& b : v) {
      if (!b.is_number() || !(b.get<double>() >= 0 && b.get<double>() <= 1))
        f.fail("moelab_skip_beta", "thresholds must be numbers in [0, 1]");
      c.skip_beta.push_back(b.get<double>());
    }
  }
  c.skip_renormalize = f.boolean("moelab_skip_renormalize", true);
  if (c.raw.contains("moelab_novices_per_layer") && !c.raw["moelab_novices_per_layer"].is_null()) {
    const auto& v = c.raw["moelab_novices_per_layer"];
    if (!v.is_array() || int64_t(v.size()) != c.num_hidden_layers)
      f.fail("moelab_novices_per_layer", "must list one novice count per layer (" + std::to_string(c.num_hidden_layers) + ")");
    for (const auto& n : v) {
      if (!n.is_number_integer() || n.get<int64_t>() < 0 || n.get<int64_t>() > (int64_t(1) << 20))
        f.fail("moelab_novices_per_layer", "counts must be integers >= 0");
      c.novices_per_layer.push_back(n.get<int64_t>());
    }
  }
  if (c.raw.contains("moelab_compressed_experts") && !c.raw["moelab_compressed_experts"].is_null()) {
    const auto& v = c.raw["moelab_compressed_experts"];
    if (!v.is_object() || !v.contains("main") || !v["main"].is_number_integer() || v["main"].get<int64_t>() < 1)
      f.fail("moelab_compressed_experts", "must be {\"main\": k_m} with an integer k_m >= 1 (main experts per token)");
    c.compressed_main = v["main"].get<int64_t>();
    // Written before variants existed (no "variant"): the vectors in that checkpoint are
    // moelab-v1's theta, so it keeps running as it did.
    c.compressed_variant = "moelab-v1";
    if (v.contains("variant")) {
      const auto& var = v["variant"];
      if (!var.is_string() || (var.get<std::string>() != "official" && var.get<std::string>() != "moelab-v1"))
        f.fail("moelab_compressed_experts", "field \"variant\" must be \"official\" or \"moelab-v1\"");
      c.compressed_variant = var.get<std::string>();
    }
  }
  return c;
}

bool names_rope_key(const nlohmann::json& raw, const std::string& key) {
  if (raw.contains(key)) return true;
  for (const char* params : {"rope_parameters", "rope_scaling"})
    if (raw.contains(params) && raw[params].is_object() && raw[params].contains(key)) return true;
  return false;
}

}  // namespace moelab::hf
