// moelab compress: turn on compressed experts (arXiv 2503.00634) in a copy of a model
// directory. config.json gets `moelab_compressed_experts: {"main": k_m, "variant": V}` and
// every MoE layer the variant's vectors, all ones (core/models/compressed_experts.h): official
// `model.layers.{L}.mlp.ces` [E, 3, max(D, F)], moelab-v1 `mlp.experts.theta` [E, D].
// moelab's runtime then runs only a token's k_m highest-gated experts, modulated by the
// vectors of the other k - k_m. Train them with `moelab finetune --params compressed`.
#include <filesystem>

#include "cluster/communicator.h"
#include "core/common/error.h"
#include "core/common/log.h"
#include "core/models/checkpoint_surgery.h"
#include "core/models/compressed_experts.h"
#include "core/models/layer_loader.h"
#include "core/models/model_writer.h"
#include "runner/cli/commands.h"
#include "runner/cli/common_options.h"
#include "runner/cli/model_options.h"

namespace moelab::cli {
namespace {

struct CompressArgs {
  std::string model_dir, out;
  int64_t main = 0;
  std::string variant = "official";
  bool overwrite = false;
  bool memory_check = true;
  bool in_memory = false;  // load the model and save it even where surgery would do
};

void run_compress(const CompressArgs& a) {
  refuse_existing_output(a.out, a.overwrite);
  const hf::ModelConfig c0 = models::load_config(a.model_dir);
  if (c0.has_novices())
    throw InputError(a.model_dir, "has MoNE novices (\"moelab_novices_per_layer\"): compress the model they were made from");
  const int64_t k = c0.num_experts_per_tok;
  if (a.main < 1 || a.main >= k)
    throw InputError("--main", std::to_string(a.main) + " is outside [1, " + std::to_string(k - 1) +
                                   "]: main experts per token must leave at least one of the model's top-" +
                                   std::to_string(k) + " as auxiliary");
  if (!c0.skip_beta.empty())
    throw InputError(c0.path, "has NAEE skipping (moelab_skip_beta), which cannot be combined with compressed experts");
  // Surgery on the checkpoint files (core/models/checkpoint_surgery.h: one tensor in memory)
  // unless asked otherwise, or for MXFP4 checkpoints, gpt-oss' own layout and a model
  // already compressed, which load the model and save it.
  if (!a.in_memory && !c0.compressed() && models::editable_by_surgery(c0, /*generic_experts=*/true)) {
    models::MoeModel shell = models::load_model_shell(a.model_dir, models::LoadOptions{});  // checks every tensor
    hf::ModelConfig out = shell.config;
    out.compressed_main = a.main;
    out.compressed_variant = a.variant;
    models::SurgeryOptions so;
    so.overwrite = a.overwrite;
    models::compress_checkpoint(shell.config, out, *shell.family, a.out, so);
  } else {
    models::LoadOptions lo;  // float32 on CPU; written back in the checkpoint's dtype
    if (a.memory_check) check_model_memory(a.model_dir, "float32", jobs::holding_model("moelab compress", false), 1);
    models::MoeModel m = models::load_model(a.model_dir, lo);
    m.config.compressed_main = a.main;
    m.config.compressed_variant = a.variant;
    for (auto& L : m.layers)
      if (L.moe) models::init_ce_vectors(*L.moe, m.config, L.moe->num_experts(), L.moe->router_ED.options());
    models::SaveOptions so;
    so.overwrite = a.overwrite;
    models::save_model(m, a.out, so);
  }
  spdlog::info("wrote {} (compressed experts, {}: {} main + {} auxiliary of top-{}, vectors = ones)", a.out,
               a.variant, a.main, k - a.main, k);
}

}  // namespace

void add_compress_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "compress",
      "Turn on compressed experts (arXiv 2503.00634) in a copy of a model directory.\n\n"
      "A token's top-k experts split into the --main highest-gated (k_m) and k - k_m auxiliary\n"
      "ones; the auxiliary experts do not run, their learned vectors modulate the main experts.\n\n"
      "--variant official (default), as the authors' code (OlmoeSparseCompressedMoeBlock): each\n"
      "expert gets three vectors c1, c2, c3 (ones); a token's c = its auxiliary experts' vectors\n"
      "weighted by their gates renormalised among themselves; main expert j computes\n"
      "down(act(gate(h * c1)) * up(h * c3) * c2) and is weighted by its original gate g_j.\n"
      "Weights: model.layers.{L}.mlp.ces [E, 3, max(D, F)] (c2 = the first F entries of row 1).\n"
      "--variant moelab-v1, moelab's first reading: one vector theta per expert (hidden size),\n"
      "the main experts run on h * theta with their gates renormalised over the main experts.\n"
      "Weights: model.layers.{L}.mlp.experts.theta [E, D].\n\n"
      "With vectors = ones the official model is the top-k model without its auxiliary experts\n"
      "(moelab-v1: the top-k_m model). Train the vectors with `moelab finetune --params\n"
      "compressed` (or full). config.json gets moelab_compressed_experts {\"main\": k_m,\n"
      "\"variant\": V}; transformers ignores it and the vectors and would run the uncompressed model.\n"
      "The output is written from the input's files one tensor at a time (memory: about one tensor,\n"
      "whatever the model's size); --in-memory loads the model instead.\n\n"
      "Examples:\n"
      "  moelab compress models/debian-moe --main 1 --out compressed/\n"
      "  moelab finetune compressed/ --sft configs/tasks/debian_moe_en.jsonl --params compressed --steps 100 --out tuned/");
  auto a = std::make_shared<CompressArgs>();
  cmd->add_option("model", a->model_dir, "Hugging Face model directory (config.json + *.safetensors)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--main", a->main, "main experts per token k_m, 1 <= k_m < num_experts_per_tok")->required();
  cmd->add_option("--variant", a->variant, "official (default: the authors' code) or moelab-v1")
      ->check(CLI::IsMember({"official", "moelab-v1"}));
  add_output_options(cmd, &a->out, &a->overwrite, "output model directory (written atomically)", true);
  add_memory_check_flag(cmd, &a->memory_check);
  cmd->add_flag("--in-memory", a->in_memory,
                "load the model and save it (by default the output is written from the input's files one tensor at "
                "a time, in the input's dtype, the vectors added after each layer's router; the in-memory path is "
                "taken anyway for MXFP4 checkpoints, gpt-oss and a model already compressed)");
  cmd->callback([a] {
    auto comm = cluster::world("auto");
    cluster::run_or_abort(*comm, [&] { run_compress(*a); });
  });
}

}  // namespace moelab::cli
