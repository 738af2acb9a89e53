// moelab inspect: a checkpoint's architecture, experts per layer and parameter
// counts, after checking every tensor's presence and shape (no weights are read).
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>

#include "core/models/moe_model.h"
#include "runner/cli/commands.h"
#include "runner/cli/model_options.h"

namespace moelab::cli {
namespace {

std::string human(int64_t n) {
  char buf[32];
  if (n >= 1000000000) std::snprintf(buf, sizeof buf, "%.2fB", n / 1e9);
  else if (n >= 1000000) std::snprintf(buf, sizeof buf, "%.2fM", n / 1e6);
  else if (n >= 1000) std::snprintf(buf, sizeof buf, "%.1fK", n / 1e3);
  else std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(n));
  return buf;
}

void run_inspect(const ModelOptions& mo, bool as_json) {
  models::LoadOptions lo;
  lo.weights = false;
  models::MoeModel m = models::load_model(mo.model_dir, lo);
  const auto& c = m.config;
  const auto p = models::count_params(c);
  nlohmann::json layers = nlohmann::json::array();
  const bool shared = c.shared_expert_intermediate_size > 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    nlohmann::json layer = {{"layer", l},
                            {"type", c.is_moe_layer(l) ? "moe" : "dense"},
                            {"experts", c.num_experts_per_layer[l]},
                            {"prunable", c.is_moe_layer(l)},
                            {"attention", c.uses_linear_attention(l)      ? "linear"
                                          : c.attn.uses_sliding_window(l) ? "sliding"
                                                                          : "full"}};
    // Shared experts: in every token's path, outside the router; never pruned.
    if (c.is_moe_layer(l) && shared)
      layer["shared_expert"] = {{"intermediate_size", c.shared_expert_intermediate_size},
                                {"gated", c.shared_expert_gate},
                                {"prunable", false}};
    layers.push_back(layer);
  }
  nlohmann::json routing = {{"scoring", hf::to_string(c.router.scoring)},
                            {"norm_topk_prob", c.router.norm_topk_prob},
                            {"topk_method", hf::to_string(c.router.topk_method)},
                            {"n_group", c.router.n_group},
                            {"topk_group", c.router.topk_group},
                            {"routed_scaling_factor", c.router.scaling_factor},
                            {"correction_bias", c.router.correction_bias}};
  // gpt-oss's router (only for the families that have it: the other families' JSON is unchanged).
  if (c.router.bias) routing["router_bias"] = true;
  if (c.router.softmax_over_topk) routing["softmax_over_topk"] = true;
  if (c.router.topk_method == hf::TopKMethod::kSparsemixer) routing["jitter_eps"] = c.router.jitter_eps;  // Phi-3.5-MoE
  nlohmann::json attention = {{"kind", c.mla ? "mla" : "gqa"},
                              {"qk_norm", c.attn.qk_norm},
                              {"bias", c.attn.bias},
                              {"sinks", c.attn.sinks}};
  nlohmann::json experts = {{"bias", c.expert.bias}, {"activation", c.expert.clamped_swiglu() ? "clamped_swiglu" : c.hidden_act}};
  if (c.expert.clamped_swiglu()) {
    experts["swiglu_limit"] = *c.expert.swiglu_limit;
    experts["swiglu_alpha"] = c.expert.swiglu_alpha;
  }
  if (c.linear_attn) {  // Qwen3-Next / Qwen3.5: Gated DeltaNet beside gated full attention
    attention["output_gate"] = c.attn.output_gate;
    attention["linear"] = {{"kind", "gated_deltanet"},
                           {"num_key_heads", c.linear_attn->num_k_heads},
                           {"num_value_heads", c.linear_attn->num_v_heads},
                           {"key_head_dim", c.linear_attn->k_head_dim},
                           {"value_head_dim", c.linear_attn->v_head_dim},
                           {"conv_kernel", c.linear_attn->conv_kernel}};
  }
  if (c.mla)
    attention["mla"] = {{"q_lora_rank", c.mla->q_lora_rank},
                        {"kv_lora_rank", c.mla->kv_lora_rank},
                        {"qk_nope_head_dim", c.mla->qk_nope_head_dim},
                        {"qk_rope_head_dim", c.mla->qk_rope_head_dim},
                        {"v_head_dim", c.mla->v_head_dim}};
  if (as_json) {
    nlohmann::json j = {{"model", mo.model_dir},
                        {"architecture", c.architecture},
                        {"family", m.family->name},
                        {"hidden_size", c.hidden_size},
                        {"num_layers", c.num_hidden_layers},
                        {"num_attention_heads", c.num_attention_heads},
                        {"num_key_value_heads", c.num_key_value_heads},
                        {"head_dim", c.head_dim},
                        {"expert_intermediate_size", c.moe_intermediate_size},
                        {"experts_per_token", c.num_experts_per_tok},
                        {"norm_topk_prob", c.router.norm_topk_prob},
                        {"routing", routing},
                        {"attention", attention},
                        {"experts", experts},
                        {"shared_expert_intermediate_size", c.shared_expert_intermediate_size},
                        {"vocab_size", c.vocab_size},
                        {"rope", {{"type", c.rope.type}, {"theta", c.rope.theta}, {"factor", c.rope.factor}}},
                        {"layers", layers},
                        {"params",
                         {{"total", p.total},
                          {"active_per_token", p.active_per_token},
                          {"routed_experts", p.routed_experts},
                          {"attention", p.attention},
                          {"routers", p.routers},
                          {"shared_experts", p.shared_experts},
                          {"dense_mlp", p.dense_mlp},
                          {"embedding", p.embedding},
                          {"lm_head", p.lm_head},
                          {"norms", p.norms}}}};
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::printf("model         %s\n", mo.model_dir.c_str());
  std::printf("architecture  %s (family %s)\n", c.architecture.c_str(), m.family->name.c_str());
  std::printf("dimensions    hidden %lld, layers %lld, heads %lld (kv %lld, head_dim %lld), vocab %lld\n",
              (long long)c.hidden_size, (long long)c.num_hidden_layers, (long long)c.num_attention_heads,
              (long long)c.num_key_value_heads, (long long)c.head_dim, (long long)c.vocab_size);
  std::string route = c.router.softmax_over_topk ? "softmax over the top-k logits" : hf::to_string(c.router.scoring);
  if (c.router.topk_method == hf::TopKMethod::kSparsemixer) {
    char eps[32];
    std::snprintf(eps, sizeof eps, "%g", c.router.jitter_eps);
    route = std::string("sparsemixer (each slot's softmax over the logits within 2 x ") + eps + " of its own)";
  }
  if (c.router.bias) route += " + router bias";
  if (c.router.correction_bias) route += " + correction bias (choice only)";
  if (c.router.topk_method != hf::TopKMethod::kGreedy && c.router.topk_method != hf::TopKMethod::kSparsemixer)
    route += std::string(", ") + hf::to_string(c.router.topk_method) + " over " + std::to_string(c.router.topk_group) + " of " + std::to_string(c.router.n_group) +
               " groups";
  if (c.router.norm_topk_prob && !c.router.softmax_over_topk) route += ", top-k renormalised";  // gpt-oss: its softmax already is
  if (c.router.scaling_factor != 1.0) {
    char scale[32];
    std::snprintf(scale, sizeof scale, "%g", c.router.scaling_factor);
    route += std::string(", gates scaled by ") + scale;
  }
  std::printf("routing       top-%lld of the layer's experts, %s\n", (long long)c.num_experts_per_tok, route.c_str());
  if (c.linear_attn) {
    int64_t linear = 0;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) linear += c.uses_linear_attention(l);
    std::printf("attention     hybrid: %lld Gated DeltaNet layers (%lld key / %lld value heads of %lld / %lld, "
                "conv %lld), %lld gated full-attention layers\n",
                (long long)linear, (long long)c.linear_attn->num_k_heads, (long long)c.linear_attn->num_v_heads,
                (long long)c.linear_attn->k_head_dim, (long long)c.linear_attn->v_head_dim,
                (long long)c.linear_attn->conv_kernel, (long long)(c.num_hidden_layers - linear));
  }
  if (c.mla)
    std::printf("attention     multi-head latent: q_lora_rank %lld, kv_lora_rank %lld, qk nope/rope %lld/%lld, v %lld\n",
                (long long)c.mla->q_lora_rank, (long long)c.mla->kv_lora_rank, (long long)c.mla->qk_nope_head_dim,
                (long long)c.mla->qk_rope_head_dim, (long long)c.mla->v_head_dim);
  else if (c.attn.qk_norm)
    std::printf("attention     q/k RMSNorm %s\n", c.attn.qk_norm_per_head ? "per head" : "over all heads");
  else if (c.attn.sinks)
    std::printf("attention     GQA%s, attention sinks (one learned logit per head)\n",
                c.attn.bias ? " with q/k/v/o biases" : "");
  if (shared)
    std::printf("shared        an MLP of intermediate size %lld%s beside the routed experts of every MoE layer "
                "(never pruned)\n",
                (long long)c.shared_expert_intermediate_size, c.shared_expert_gate ? ", sigmoid-gated," : "");
  std::printf("rope          %s, theta %g%s\n", c.rope.type.c_str(), c.rope.theta,
              c.attn.sliding_window ? (", sliding window " + std::to_string(*c.attn.sliding_window)).c_str() : "");
  std::printf("experts       intermediate size %lld, %s parameters each\n", (long long)c.moe_intermediate_size,
              human(3 * c.hidden_size * c.moe_intermediate_size +
                    (c.expert.bias ? 2 * c.moe_intermediate_size + c.hidden_size : 0))
                  .c_str());
  if (c.expert.bias || c.expert.clamped_swiglu()) {
    char glu[96] = "";
    if (c.expert.clamped_swiglu())
      std::snprintf(glu, sizeof glu, "clamped SwiGLU (alpha %g, limit %g)", c.expert.swiglu_alpha, *c.expert.swiglu_limit);
    std::printf("              %s%s\n", c.expert.bias ? "biases on gate/up and down; " : "", glu);
  }
  std::printf("\n  layer  type   experts\n");
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    std::string note = !c.is_moe_layer(l) ? "  (dense MLP, never pruned)"
                       : shared            ? "  + shared expert (never pruned)"
                                           : "";
    if (c.attn.sliding_window && !c.attn.sliding_layers.empty() && c.attn.uses_sliding_window(l)) note += "  [sliding window]";
    if (c.linear_attn) note += c.uses_linear_attention(l) ? "  [linear attention]" : "  [full attention]";
    std::printf("  %5lld  %-5s  %7lld%s\n", (long long)l, c.is_moe_layer(l) ? "moe" : "dense",
                (long long)c.num_experts_per_layer[l], note.c_str());
  }
  std::printf("\nparameters    total %s, active per token %s (%.1f%%)\n", human(p.total).c_str(),
              human(p.active_per_token).c_str(), 100.0 * p.active_per_token / double(p.total));
  std::printf("              routed experts %s, shared experts %s, attention %s, routers %s, dense MLP %s, "
              "embedding %s, lm_head %s\n",
              human(p.routed_experts).c_str(), human(p.shared_experts).c_str(), human(p.attention).c_str(),
              human(p.routers).c_str(), human(p.dense_mlp).c_str(), human(p.embedding).c_str(),
              human(p.lm_head).c_str());
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "inspect",
      "Print a checkpoint's architecture, experts per layer and parameter counts.\n"
      "Checks that every tensor the config implies is present with the right shape (reads no weights,\n"
      "so it is fast on checkpoints of any size). Active parameters per token count k routed experts\n"
      "per MoE layer plus everything that is not a routed expert.\n\n"
      "Examples:\n  moelab inspect models/debian-moe\n  moelab inspect models/debian-moe --json | jq .params");
  auto mo = std::make_shared<ModelOptions>();
  auto as_json = std::make_shared<bool>(false);
  cmd->add_option("model", mo->model_dir, "Hugging Face model directory (config.json + *.safetensors)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_flag("--json", *as_json, "print JSON instead of a table");
  cmd->callback([mo, as_json] { run_inspect(*mo, *as_json); });
}

}  // namespace moelab::cli
