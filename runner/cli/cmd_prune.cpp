// moelab prune: remove given experts from a checkpoint and write a Hugging Face
// model directory that transformers loads.
#include <regex>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "common/error.h"
#include "common/log.h"
#include "models/expert_surgery.h"
#include "models/model_writer.h"

namespace moelab::cli {
namespace {

struct PruneArgs {
  ModelOptions model;
  std::vector<std::string> drops;
  std::string out, save_dtype = "auto";
  bool overwrite = false;
};

// "L:e1,e2,..." -> (L, {e1, e2, ...})
models::ExpertDrops parse_drops(const std::vector<std::string>& specs) {
  static const std::regex kSpec(R"(^([0-9]+):([0-9]+(,[0-9]+)*)$)");
  models::ExpertDrops drops;
  for (const auto& s : specs) {
    std::smatch m;
    if (!std::regex_match(s, m, kSpec))
      throw InputError("--drop", "\"" + s + "\" is not LAYER:EXPERT[,EXPERT...] (e.g. 0:1,5)");
    int64_t layer = std::stoll(m[1].str());
    std::stringstream ss(m[2].str());
    std::string e;
    while (std::getline(ss, e, ',')) drops[layer].push_back(std::stoll(e));
  }
  return drops;
}

void run_prune(const PruneArgs& a) {
  models::ExpertDrops drops = parse_drops(a.drops);
  models::MoeModel m = models::load_model(a.model.model_dir, a.model.load_options());
  models::remove_experts(m, drops);
  models::SaveOptions so;
  so.overwrite = a.overwrite;
  if (a.save_dtype != "auto") so.dtype = parse_dtype(a.save_dtype);
  models::save_model(m, a.out, so);
  const auto before = models::count_params(models::load_config(a.model.model_dir));
  const auto after = models::count_params(m);
  spdlog::info("wrote {}: {} -> {} parameters ({} active per token)", a.out, before.total, after.total,
               after.active_per_token);
}

}  // namespace

void add_prune_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "prune",
      "Remove experts from a checkpoint and write a model directory that transformers loads.\n"
      "Dropping expert j of a layer removes its weights and row j of the router; routing keeps top-k and\n"
      "renormalises over the surviving experts as the model's own router does. Expert indices are the\n"
      "layer's current indices (0-based).\n\n"
      "If layers end up with different expert counts, config.json records them in\n"
      "moelab_num_experts_per_layer and points auto_map at a small modeling_moelab.py, so load it with\n"
      "AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True).\n\n"
      "Example:\n  moelab prune models/tiny-mixtral --drop 0:1,5 --drop 1:2 --out pruned/");
  auto a = std::make_shared<PruneArgs>();
  a->model.add_to(cmd);
  cmd->add_option("--drop", a->drops, "LAYER:EXPERT[,EXPERT...] to remove (repeatable)")->required();
  cmd->add_option("--out", a->out, "output model directory (written atomically)")->required();
  cmd->add_option("--save-dtype", a->save_dtype, "dtype of the saved weights: auto (as the input), float32, bfloat16, float16")
      ->check(CLI::IsMember({"auto", "float32", "bfloat16", "float16"}));
  cmd->add_flag("--overwrite", a->overwrite, "replace --out if it exists");
  cmd->callback([a] { run_prune(*a); });
}

}  // namespace moelab::cli
