// moelab merge: calibration statistics -> merge plan -> merged checkpoint. Groups each
// MoE layer's experts by the similarity of their mean outputs and merges each group
// into one expert with usage-frequency weights (HC-SMoE / M-SMoE; runner/jobs/prune/merge_plan.h,
// core/models/expert_merging.h), writing a Hugging Face model directory.
#include <filesystem>

#include "cluster/communicator.h"
#include "core/common/error.h"
#include "core/common/log.h"
#include "core/common/memory_budget.h"
#include "core/models/checkpoint_surgery.h"
#include "core/models/expert_merging.h"
#include "core/models/layer_loader.h"
#include "core/models/model_writer.h"
#include "results/stats_file.h"
#include "runner/cli/commands.h"
#include "runner/cli/common_options.h"
#include "runner/cli/model_options.h"
#include "runner/jobs/prune/merge_plan.h"

namespace moelab::cli {
namespace {

struct MergeArgs {
  ModelOptions model;
  std::string stats, plan_in, plan_out, out, save_dtype = "auto", router_merge;
  jobs::MergeOptions opts;
  bool overwrite = false;
  bool in_memory = false;  // load the model and save it even where surgery would do
};

// Merging is surgery on the checkpoint files (core/models/checkpoint_surgery.h: one merge group
// in memory at a time) unless asked otherwise, or for a compute dtype other than float32
// (the in-memory merge rounds through it), MXFP4 checkpoints and gpt-oss' own layout,
// which load the model and save it.
bool by_surgery(const MergeArgs& a, const hf::ModelConfig& c) {
  if (a.in_memory || (a.model.dtype != "auto" && a.model.dtype != "float32") || a.model.device != "cpu") return false;
  return models::editable_by_surgery(c, /*generic_experts=*/true);
}

std::string groups_str(const jobs::LayerMerge& lm) {
  std::string s;
  for (const auto& g : lm.groups) {
    std::string one;
    for (int64_t e : g) one += (one.empty() ? "" : ",") + std::to_string(e);
    s += (s.empty() ? "{" : " {") + one + "}";
  }
  return s;
}

void run_merge(const MergeArgs& a) {
  if (a.stats.empty() == a.plan_in.empty()) throw InputError("moelab merge", "give exactly one of --stats, --plan");
  if (a.out.empty() && a.plan_out.empty()) throw InputError("--out", "give the output model directory (or --plan-out)");
  refuse_existing_output(a.out, a.overwrite);
  if (!a.router_merge.empty()) (void)jobs::parse_router_merge(a.router_merge, "--router-merge");
  const bool surgery = by_surgery(a, models::load_config(a.model.model_dir));
  // Surgery plans on the model's shell: every tensor checked, none read.
  if (!surgery) a.model.check_memory(jobs::holding_model("moelab merge", false), 1);
  models::MoeModel m = surgery ? models::load_model_shell(a.model.model_dir, models::LoadOptions{})
                               : models::load_model(a.model.model_dir, a.model.load_options());
  const hf::ModelConfig input = m.config;
  const auto before = models::count_params(m);

  jobs::MergePlan plan;
  std::string what = "merge plan";
  if (!a.stats.empty()) {
    jobs::MergeOptions o = a.opts;
    if (!a.router_merge.empty()) o.router_merge = a.router_merge;
    const results::CalibrationStats st = results::read_stats(a.stats);
    plan = jobs::plan_merges(m, st, o, a.stats);
    plan.model = a.model.model_dir;
  } else {
    plan = results::load_merge_plan(a.plan_in);
    jobs::check_merge_plan(plan, m, a.plan_in);
    if (!a.router_merge.empty()) plan.router_merge = a.router_merge;  // the command line wins
    what = a.plan_in;
  }
  const models::ExpertMerges merges = jobs::to_expert_merges(plan);
  const models::RouterMerge router = jobs::parse_router_merge(plan.router_merge, what);
  models::merge_experts(m, merges, router, what);  // on the shell: the checks and the merged config
  for (const auto& [l, lm] : plan.layers)
    spdlog::info("layer {}: {} experts -> {} groups {}", l, lm.num_experts, lm.groups.size(), groups_str(lm));
  if (!a.plan_out.empty()) {
    results::save_merge_plan(plan, a.plan_out);
    spdlog::info("wrote merge plan {}", a.plan_out);
  }
  if (a.out.empty()) return;
  if (surgery) {
    models::SurgeryOptions so;
    so.overwrite = a.overwrite;
    if (a.save_dtype != "auto") so.dtype = parse_dtype(a.save_dtype);
    // Each group's float64 sums are a few MiB, freed after each tensor: as their own
    // mappings they go back to the system, instead of growing the heap (+120 MiB measured
    // on a 400 MB checkpoint).
    map_large_blocks();
    models::merge_checkpoint(input, m.config, *m.family, merges, router, a.out, so);
  } else {
    models::SaveOptions so;
    so.overwrite = a.overwrite;
    if (a.save_dtype != "auto") so.dtype = parse_dtype(a.save_dtype);
    models::save_model(m, a.out, so);
  }
  const auto after = models::count_params(m);
  spdlog::info("wrote {} (router rows: {}): {} -> {} parameters ({} -> {} active per token)", a.out,
               plan.router_merge, before.total, after.total, before.active_per_token, after.active_per_token);
}

}  // namespace

void add_merge_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "merge",
      "Merge experts instead of dropping them (HC-SMoE, arXiv 2410.08589; M-SMoE, arXiv 2310.01334) and\n"
      "write a model directory that transformers loads.\n\n"
      "Per MoE layer, experts are grouped by hierarchical clustering (average linkage) on the cosine\n"
      "distance between their mean outputs over all calibration tokens, down to E - round(ratio * E)\n"
      "groups; each group becomes one expert whose gate, up and down matrices are the average of its\n"
      "members' weighted by how many tokens each was routed (a group that got no token: plain average).\n"
      "The router keeps one row per group: the same weighted average of the members' rows (avg), or the\n"
      "row of the group's most used expert (dominant, as M-SMoE). Top-k stays k.\n"
      "Statistics: moelab calibrate MODEL --data FILE --collect dense_outputs (every expert runs on every\n"
      "token: E/k times the expert FLOPs of a plain pass; usage is always collected).\n"
      "--method ream (REAM, arXiv 2604.04356): REAP's router-weighted activation (mean g ||f|| over routed\n"
      "tokens) picks the E - round(ratio * E) most salient experts as centroids; each other expert joins\n"
      "the centroid with the most similar mean output; members are weighted by their REAP saliency.\n"
      "Plan (JSON, runner/jobs/prune/merge_plan.h): per layer the groups of original expert ids, their weights\n"
      "and dominant experts; --plan-out writes it, --plan applies a saved one.\n"
      "The merged checkpoint is written from the input's files tensor by tensor (memory: one merge group,\n"
      "whatever the model's size; the same values as the in-memory merge of the float32-loaded model saved\n"
      "in the input's dtype); --in-memory loads the model instead.\n\n"
      "Examples:\n"
      "  moelab calibrate models/debian-moe --data models/debian-moe/corpus/en.calibration.jsonl --criteria EUF --collect dense_outputs --out stats.h5\n"
      "  moelab merge models/debian-moe --stats stats.h5 --ratio 0.5 --plan-out merge.json --out merged/\n"
      "  moelab merge models/debian-moe --stats stats.h5 --ratio 0.25 --router-merge dominant --out merged/\n"
      "  moelab merge models/debian-moe --plan merge.json --out merged/\n"
      "  moelab calibrate models/debian-moe --data models/debian-moe/corpus/en.calibration.jsonl --criteria REAP --collect dense_outputs --out stats.h5\n"
      "  moelab merge models/debian-moe --stats stats.h5 --ratio 0.25 --method ream --out merged/");
  auto a = std::make_shared<MergeArgs>();
  a->model.add_to(cmd);
  cmd->add_option("--stats", a->stats, "HDF5 statistics from moelab calibrate with dense_outputs (and usage)");
  cmd->add_option("--plan", a->plan_in, "apply this saved merge plan");
  cmd->add_option("--ratio", a->opts.ratio, "fraction of each layer's experts merged away, in [0, 1) (default 0.5)");
  cmd->add_option("--method", a->opts.method,
                  "hc-smoe (clustering, usage-frequency weights; default) or ream (REAP-salient experts as "
                  "centroids, the others joined to the most similar one, REAP-weighted; needs out_norms)")
      ->check(CLI::IsMember({"hc-smoe", "ream"}));
  cmd->add_option("--router-merge", a->router_merge,
                  "router row of a merged expert: avg (usage-weighted average of the members' rows; default) or "
                  "dominant (the most used member's row)")
      ->check(CLI::IsMember({"avg", "dominant"}));
  cmd->add_option("--plan-out", a->plan_out, "write the merge plan (JSON) here");
  add_output_options(cmd, &a->out, &a->overwrite, "output model directory (written atomically)");
  cmd->add_option("--save-dtype", a->save_dtype,
                  "dtype of the saved weights: auto (as the input), float32, bfloat16, float16")
      ->check(CLI::IsMember({"auto", "float32", "bfloat16", "float16"}));
  cmd->add_flag("--in-memory", a->in_memory,
                "load the model and save it (by default the merged checkpoint is written from the input's files, one "
                "merge group in memory at a time, in the input's dtype; the in-memory path is taken anyway for "
                "--dtype other than float32, --device cuda, MXFP4 checkpoints and gpt-oss)");
  cmd->callback([a] {
    auto comm = cluster::world("auto");
    cluster::run_or_abort(*comm, [&] { run_merge(*a); });
  });
}

}  // namespace moelab::cli
