// moelab compress: turn on compressed experts (arXiv 2503.00634) in a copy of a model
// directory. config.json gets `moelab_compressed_experts: {"main": k_m}` and every MoE
// layer a tensor `model.layers.{L}.mlp.experts.theta` [E, D] of ones; moelab's runtime
// then runs only a token's k_m highest-gated experts, on h * theta (theta from the other
// k - k_m, models/moe_block.cpp). Train theta with `moelab finetune --params compressed`.
#include <filesystem>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "cluster/communicator.h"
#include "common/error.h"
#include "common/log.h"
#include "models/model_writer.h"

namespace moelab::cli {
namespace {

struct CompressArgs {
  std::string model_dir, out;
  int64_t main = 0;
  bool overwrite = false;
  bool memory_check = true;
};

void run_compress(const CompressArgs& a) {
  if (std::filesystem::exists(a.out) && !a.overwrite)
    throw InputError(a.out, "output already exists (pass --overwrite to replace it)");
  const hf::ModelConfig c0 = models::load_config(a.model_dir);
  const int64_t k = c0.num_experts_per_tok;
  if (a.main < 1 || a.main >= k)
    throw InputError("--main", std::to_string(a.main) + " is outside [1, " + std::to_string(k - 1) +
                                   "]: main experts per token must leave at least one of the model's top-" +
                                   std::to_string(k) + " as auxiliary");
  if (!c0.skip_beta.empty())
    throw InputError(c0.path, "has NAEE skipping (moelab_skip_beta), which cannot be combined with compressed experts");
  models::LoadOptions lo;  // float32 on CPU; written back in the checkpoint's dtype
  if (a.memory_check) check_model_memory(a.model_dir, "float32", jobs::holding_model("moelab compress", false), 1);
  models::MoeModel m = models::load_model(a.model_dir, lo);
  m.config.compressed_main = a.main;
  for (auto& L : m.layers)
    if (L.moe) L.moe->theta_ED = at::ones({L.moe->num_experts(), m.config.hidden_size}, L.moe->router_ED.options());
  models::SaveOptions so;
  so.overwrite = a.overwrite;
  models::save_model(m, a.out, so);
  spdlog::info("wrote {} (compressed experts: {} main + {} auxiliary of top-{}, theta = ones)", a.out, a.main,
               k - a.main, k);
}

}  // namespace

void add_compress_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "compress",
      "Turn on compressed experts (arXiv 2503.00634) in a copy of a model directory.\n\n"
      "Each MoE layer gets one vector theta_i (hidden size, initialised to ones) per expert. A token's\n"
      "top-k experts split into the --main highest-gated (k_m) and k - k_m auxiliary ones; the\n"
      "auxiliary experts do not run: theta = sum of their theta_i weighted by their renormalised\n"
      "gates, and the main experts run on h * theta with their gates renormalised over the main\n"
      "experts. With theta = ones the model equals the top-k_m model. Train theta with\n"
      "`moelab finetune --params compressed` (or full). The copy's config.json gets\n"
      "moelab_compressed_experts {\"main\": k_m} and the weights model.layers.{L}.mlp.experts.theta;\n"
      "transformers ignores both and would run the uncompressed model.\n\n"
      "Examples:\n"
      "  moelab compress models/mixtral --main 1 --out compressed/\n"
      "  moelab finetune compressed/ --sft task.jsonl --params compressed --steps 100 --out tuned/");
  auto a = std::make_shared<CompressArgs>();
  cmd->add_option("model", a->model_dir, "Hugging Face model directory (config.json + *.safetensors)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--main", a->main, "main experts per token k_m, 1 <= k_m < num_experts_per_tok")->required();
  cmd->add_option("--out", a->out, "output model directory (written atomically)")->required();
  cmd->add_flag("--overwrite", a->overwrite, "replace --out if it exists");
  add_memory_check_flag(cmd, &a->memory_check);
  cmd->callback([a] {
    auto comm = cluster::world("auto");
    cluster::run_or_abort(*comm, [&] { run_compress(*a); });
  });
}

}  // namespace moelab::cli
