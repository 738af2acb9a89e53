// moelab inspect: a checkpoint's architecture, experts per layer and parameter
// counts, after checking every tensor's presence and shape (no weights are read).
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "models/moe_model.h"

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
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    layers.push_back({{"layer", l},
                      {"type", c.is_moe_layer(l) ? "moe" : "dense"},
                      {"experts", c.num_experts_per_layer[l]},
                      {"prunable", c.is_moe_layer(l)}});
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
                        {"norm_topk_prob", c.norm_topk_prob},
                        {"vocab_size", c.vocab_size},
                        {"rope", {{"type", c.rope.type}, {"theta", c.rope.theta}, {"factor", c.rope.factor}}},
                        {"layers", layers},
                        {"params",
                         {{"total", p.total},
                          {"active_per_token", p.active_per_token},
                          {"routed_experts", p.routed_experts},
                          {"attention", p.attention},
                          {"routers", p.routers},
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
  std::printf("routing       top-%lld of the layer's experts, softmax%s\n", (long long)c.num_experts_per_tok,
              c.norm_topk_prob ? ", top-k renormalised" : "");
  std::printf("rope          %s, theta %g%s\n", c.rope.type.c_str(), c.rope.theta,
              c.sliding_window ? (", sliding window " + std::to_string(*c.sliding_window)).c_str() : "");
  std::printf("experts       intermediate size %lld, %s parameters each\n", (long long)c.moe_intermediate_size,
              human(3 * c.hidden_size * c.moe_intermediate_size).c_str());
  std::printf("\n  layer  type   experts\n");
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    std::printf("  %5lld  %-5s  %7lld%s\n", (long long)l, c.is_moe_layer(l) ? "moe" : "dense",
                (long long)c.num_experts_per_layer[l], c.is_moe_layer(l) ? "" : "  (dense MLP, never pruned)");
  std::printf("\nparameters    total %s, active per token %s (%.1f%%)\n", human(p.total).c_str(),
              human(p.active_per_token).c_str(), 100.0 * p.active_per_token / double(p.total));
  std::printf("              routed experts %s, attention %s, routers %s, dense MLP %s, embedding %s, lm_head %s\n",
              human(p.routed_experts).c_str(), human(p.attention).c_str(), human(p.routers).c_str(),
              human(p.dense_mlp).c_str(), human(p.embedding).c_str(), human(p.lm_head).c_str());
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "inspect",
      "Print a checkpoint's architecture, experts per layer and parameter counts.\n"
      "Checks that every tensor the config implies is present with the right shape (reads no weights,\n"
      "so it is fast on checkpoints of any size). Active parameters per token count k routed experts\n"
      "per MoE layer plus everything that is not a routed expert.\n\n"
      "Example:\n  moelab inspect models/tiny-mixtral\n  moelab inspect models/tiny-mixtral --json | jq .params");
  auto mo = std::make_shared<ModelOptions>();
  auto as_json = std::make_shared<bool>(false);
  cmd->add_option("model", mo->model_dir, "Hugging Face model directory (config.json + *.safetensors)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_flag("--json", *as_json, "print JSON instead of a table");
  cmd->callback([mo, as_json] { run_inspect(*mo, *as_json); });
}

}  // namespace moelab::cli
