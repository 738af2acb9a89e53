// moelab plan-resources: the memory one rank of `moelab calibrate` (or eval, forward,
// prune) needs, from config.json (schedulers/resource_plan.h), and the smallest rank count
// that fits a budget. No weight is read (prune: the safetensors headers are).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <set>
#include <nlohmann/json.hpp>

#include "core/common/error.h"
#include "core/common/memory_budget.h"
#include "core/hf/checkpoint.h"
#include "core/models/family.h"
#include "core/models/moe_model.h"
#include "criteria/registry.h"
#include "results/calibration_stats.h"
#include "results/stat_groups.h"
#include "runner/cli/commands.h"
#include "runner/cli/common_options.h"
#include "runner/jobs/layerwise/layerwise_calibration.h"
#include "schedulers/resource_plan.h"

namespace moelab::cli {
namespace {

struct PlanArgs {
  std::string model_dir, command = "calibrate", dtype = "auto", budget, memory_budget;
  int ranks = 1;
  int64_t batch_size = 8, seq_len = 512, num_samples = 128;
  std::vector<std::string> criteria, collect;
  bool layerwise = false, json = false;
};

// The statistic groups calibrate would collect for these --criteria / --collect
// (cmd_calibrate.cpp does the same: layer by layer, the default set leaves out
// act_outliers, and groups that need the whole model are refused).
std::set<std::string> groups_of(const PlanArgs& a) {
  if (a.command != "calibrate") {
    if (!a.criteria.empty() || !a.collect.empty())
      throw InputError(a.criteria.empty() ? "--collect" : "--criteria",
                       "plans calibrate's statistics; moelab " + a.command + " collects none");
    return {};
  }
  std::set<std::string> groups = criteria::stat_groups_needed(a.criteria);
  if (a.layerwise && a.criteria.empty())
    groups = results::without_whole_model_groups(groups);
  for (const auto& g : a.collect) {
    results::check_stat_group_name(g, "--collect");
    groups.insert(g);
  }
  groups.insert(results::stat::kUsage);
  if (a.layerwise) jobs::check_layerwise_groups(groups);
  return groups;
}

// prune: the largest tensor and the largest fused-experts tensor of the checkpoint, from
// its safetensors headers (no data is read); nothing when the directory has config.json
// alone (the plan then estimates them from the config).
void largest_tensors(const std::string& dir, const hf::ModelConfig& c, schedulers::ResourceQuery& q) {
  namespace fs = std::filesystem;
  if (!fs::exists(fs::path(dir) / "model.safetensors") && !fs::exists(fs::path(dir) / "model.safetensors.index.json"))
    return;
  const hf::Checkpoint ck(dir);
  const models::FamilySpec& family = models::family_for(c);
  std::set<std::string> fused;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    for (const auto& t : {family.names.experts_gate_up_fused, family.names.experts_down_fused})
      fused.insert(models::tensor_name(t, l));
  for (const auto& name : ck.names()) {
    const hf::TensorInfo& info = ck.info(name);
    const int64_t bytes = int64_t(info.end - info.begin);
    q.largest_tensor_bytes = std::max(q.largest_tensor_bytes, bytes);
    if (fused.count(name)) q.largest_fused_experts_bytes = std::max(q.largest_fused_experts_bytes, bytes);
  }
}

nlohmann::json rank_json(const schedulers::RankPlan& r) {
  return {{"rank", r.rank},
          {"experts_held", r.experts_held},
          {"layer_bytes", r.layer_bytes},
          {"scratch", r.scratch},
          {"baseline", r.baseline},
          {"shared_weights", r.shared},
          {"checkpoint_pages", r.checkpoint},
          {"experts", r.experts},
          {"activations", r.activations},
          {"statistics", r.statistics},
          {"hidden_states", r.hidden_states},
          {"total", r.total()}};
}

void run_plan(const PlanArgs& a) {
  schedulers::ResourceQuery q;
  q.command = schedulers::planned_command(a.command);
  if (q.command == schedulers::PlannedCommand::Prune && (a.layerwise || a.ranks > 1))
    throw InputError(a.layerwise ? "--layerwise" : "--ranks",
                     "prune is surgery on the checkpoint files: one process, one tensor at a time");
  q.dtype = a.dtype;
  schedulers::dtype_bytes(q.dtype);  // checked before reading anything
  q.ranks = a.ranks;
  q.batch_size = a.batch_size;
  q.seq_len = a.seq_len;
  q.num_samples = a.num_samples;
  q.layerwise = a.layerwise;
  const int64_t budget = a.budget.empty() ? 0 : parse_byte_size("--budget", a.budget);
  q.groups = groups_of(a);
  q.budget = budget;
  if (!a.memory_budget.empty()) {
    if (!a.layerwise) throw InputError("--memory-budget", "needs --layerwise (as " + a.command + "'s)");
    q.memory_budget = parse_byte_size("--memory-budget", a.memory_budget);
  }
  const hf::ModelConfig c = models::load_config(a.model_dir);
  if (q.command == schedulers::PlannedCommand::Prune) largest_tensors(a.model_dir, c, q);
  const schedulers::ResourcePlan plan = schedulers::plan_resources(c, q);
  std::optional<int> fits;
  if (budget > 0) {
    fits = schedulers::smallest_ranks_within(c, q, budget);
    if (!fits) {
      schedulers::ResourceQuery most = q;
      most.ranks = schedulers::max_useful_ranks(c);
      const int64_t least = schedulers::plan_resources(c, most).peak;
      throw InputError("--budget", a.budget + " (" + schedulers::format_bytes(budget) +
                                       ") is below the smallest possible peak per rank, " + schedulers::format_bytes(least) +
                                       " at P = " + std::to_string(most.ranks) +
                                       (q.layerwise ? "" : " (try --layerwise)"));
    }
  }
  std::string groups;
  for (const auto& g : q.groups) groups += (groups.empty() ? "" : ",") + g;
  int64_t moe_layers = 0;
  for (int64_t n : c.num_experts_per_layer) moe_layers += n > 0;
  if (a.json) {
    nlohmann::json ranks = nlohmann::json::array();
    for (const auto& r : plan.ranks) ranks.push_back(rank_json(r));
    nlohmann::json j = {{"model", a.model_dir},
                        {"architecture", c.architecture},
                        {"command", a.command},
                        {"mode", q.command == schedulers::PlannedCommand::Prune ? "surgery" : q.layerwise ? "layerwise" : "whole"},
                        {"ranks", q.ranks},
                        {"dtype", q.dtype == "auto" ? "float32" : q.dtype},
                        {"batch_size", q.batch_size},
                        {"seq_len", q.seq_len},
                        {"num_samples", q.num_samples},
                        {"tokens_per_forward", plan.tokens_per_forward},
                        {"statistic_groups", q.groups},
                        {"per_rank", ranks},
                        {"peak_per_rank", plan.peak},
                        {"hdf5_output_bytes", plan.hdf5_bytes},
                        {"scratch_file_bytes", plan.scratch_bytes}};
    if (budget > 0) j["budget"] = {{"bytes", budget}, {"smallest_ranks", *fits}};
    if (q.layerwise) j["memory_budget"] = schedulers::layerwise_memory_budget(q);
    std::cout << j.dump(1) << "\n";
    return;
  }
  std::printf("%s: %s, %lld layers (%lld MoE), %lld routed experts at most per layer, top-%lld\n", a.model_dir.c_str(),
              c.architecture.c_str(), static_cast<long long>(c.num_hidden_layers), static_cast<long long>(moe_layers),
              static_cast<long long>(schedulers::max_useful_ranks(c)), static_cast<long long>(c.num_experts_per_tok));
  if (q.command == schedulers::PlannedCommand::Prune) {
    const schedulers::RankPlan& r = plan.ranks[0];
    std::printf("prune by surgery on the checkpoint files (stored dtype %s): baseline %s + the largest tensor's mapped "
                "pages %s + a sliced copy %s = peak %s\n",
                c.torch_dtype.empty() ? "unknown" : c.torch_dtype.c_str(), schedulers::format_bytes(r.baseline).c_str(),
                schedulers::format_bytes(r.checkpoint).c_str(), schedulers::format_bytes(r.activations).c_str(),
                schedulers::format_bytes(plan.peak).c_str());
    return;
  }
  std::printf("%s on %d rank(s), %s, %s: %lld x %lld tokens per forward, %s sequences; statistics: %s\n",
              a.command.c_str(), q.ranks, q.layerwise ? "layer by layer" : "whole model", q.dtype == "auto" ? "float32" : q.dtype.c_str(),
              static_cast<long long>(std::min(q.batch_size, q.num_samples > 0 ? q.num_samples : q.batch_size)),
              static_cast<long long>(q.seq_len),
              q.num_samples > 0 ? std::to_string(q.num_samples).c_str() : "all", groups.empty() ? "none" : groups.c_str());
  if (q.layerwise) {
    const int64_t mb = schedulers::layerwise_memory_budget(q);
    std::printf("layer by layer: one decoder layer's weights resident at a time (shared and experts: the largest "
                "layer on the rank), no embedding%s; %s --memory-budget %s\n",
                q.command == schedulers::PlannedCommand::Calibrate ? " or lm_head" : ", lm_head after the last layer",
                a.command.c_str(), mb > 0 ? schedulers::format_bytes(mb).c_str() : "none (hidden states in memory)");
  }
  std::printf("\n%-5s %-8s %10s %10s %10s %10s %10s %10s %10s %10s\n", "rank", "held", "baseline", "shared",
              "ckpt-pages", "experts", "activation", "statistics", "hidden", "total");
  for (const auto& r : plan.ranks) {
    auto f = [](int64_t b) { return schedulers::format_bytes(b); };
    std::printf("%-5d %-8lld %10s %10s %10s %10s %10s %10s %10s %10s\n", r.rank, static_cast<long long>(r.experts_held),
                f(r.baseline).c_str(), f(r.shared).c_str(), f(r.checkpoint).c_str(), f(r.experts).c_str(),
                f(r.activations).c_str(), f(r.statistics).c_str(), f(r.hidden_states).c_str(), f(r.total()).c_str());
  }
  std::printf("\npeak per rank: %s; HDF5 output (rank 0 writes): at most %s", schedulers::format_bytes(plan.peak).c_str(),
              schedulers::format_bytes(plan.hdf5_bytes).c_str());
  if (plan.scratch_bytes > 0)
    std::printf("; hidden states in a scratch file (--scratch-dir): %s", schedulers::format_bytes(plan.scratch_bytes).c_str());
  std::printf("\n");
  if (budget > 0)
    std::printf("budget %s (%s per rank): the smallest rank count that fits is P = %d\n", a.budget.c_str(),
                schedulers::format_bytes(budget).c_str(), *fits);
}

}  // namespace

void add_plan_resources_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "plan-resources",
      "Estimate the peak memory per rank of `moelab calibrate` (or --command eval, forward, prune) from\n"
      "config.json alone (no weights are read), and the smallest rank count P that fits a budget.\n"
      "Sweeps run the same estimate before running or submitting a calibration job and refuse one that\n"
      "exceeds its resources' mem.\n\n"
      "Per rank (bytes of resident memory, what /usr/bin/time -f %M reports as peak RSS):\n"
      "  baseline     the process itself: libtorch CPU, MPI (measured; bench/RESULTS.md)\n"
      "  shared       weights every rank holds: embeddings, lm_head, norms, attention, routers, shared\n"
      "               experts and dense MLPs, in the compute dtype\n"
      "  ckpt-pages   when --dtype differs from the file's: the mapped pages of the largest of those\n"
      "               weights while it is converted (each tensor's pages are dropped once converted)\n"
      "  experts      this rank's routed experts (a contiguous block of every MoE layer; 'held' counts\n"
      "               them), plus the one being copied while loading\n"
      "  activation   one forward's working set over batch-size x seq-len tokens: residual stream,\n"
      "               attention (scores included), router, dispatch buffers to and from the experts'\n"
      "               ranks, one expert's intermediates, the logits; with gradients, the backward's too\n"
      "  statistics   the statistic sums of every layer and expert (all-reduced in place on each rank)\n"
      "  hidden       --layerwise: hidden states of this rank's calibration tokens between layers (one\n"
      "               batch when they go to a scratch file)\n"
      "  HDF5 output  the statistics file rank 0 writes (uncompressed size: an upper bound)\n"
      "--layerwise plans `calibrate --layerwise [--memory-budget SIZE]`: shared and experts are then the\n"
      "largest decoder layer's weights on the rank (the embedding and lm_head are never held),\n"
      "activation is one batch through one layer, and the hidden states stay in memory unless they\n"
      "exceed half of what that layer leaves of --memory-budget (then a scratch file holds them), as\n"
      "calibrate decides; with --budget and no --memory-budget, calibrate is taken to get the budget\n"
      "less the baseline.\n"
      "--command eval / forward: no statistics; the logits of a batch, and what the command keeps of\n"
      "them (eval: one sequence's log-probabilities; forward: every sequence's logits, on rank 0);\n"
      "with --layerwise the final norm and lm_head are loaded after the last layer (--num-samples:\n"
      "eval's windows or forward's sequences; --seq-len: their length). --command prune: surgery on the\n"
      "checkpoint files, the baseline plus the largest tensor's pages and a sliced copy.\n"
      "Every mode is checked against the measured peak RSS (bench/plan_vs_measured.py, bench/RESULTS.md).\n\n"
      "Examples:\n"
      "  moelab plan-resources models/debian-moe --ranks 2\n"
      "  moelab plan-resources configs/shapes/mixtral-8x7b --ranks 8 --dtype bfloat16 --seq-len 2048 --budget 64GiB\n"
      "  moelab plan-resources configs/shapes/mixtral-8x7b --ranks 4 --layerwise --criteria EAN,REAP --json\n"
      "  moelab plan-resources configs/shapes/olmoe-1b-7b --command eval --layerwise --memory-budget 3G --seq-len 2048\n"
      "  moelab plan-resources configs/shapes/olmoe-1b-7b --command prune\n"
      "  (configs/shapes/: config.json alone of real models, for planning before a download)");
  auto a = std::make_shared<PlanArgs>();
  cmd->add_option("model", a->model_dir,
                  "model directory (its config.json is read; with --command prune also the safetensors headers, "
                  "when there are any)")
      ->required();
  cmd->add_option("--ranks", a->ranks, "ranks P the calibration would run on (this command itself runs on one)")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--command", a->command, "the command planned: calibrate (default), eval, forward, prune")
      ->check(CLI::IsMember({"calibrate", "eval", "forward", "prune"}));
  cmd->add_flag("--layerwise", a->layerwise, "layer by layer (calibrate, eval or forward --layerwise)");
  cmd->add_option("--memory-budget", a->memory_budget,
                  "with --layerwise: calibrate's --memory-budget (e.g. 8G), which decides whether the hidden "
                  "states go to a scratch file");
  cmd->add_option("--dtype", a->dtype, "compute dtype: auto (float32), float32, bfloat16, float16, float64");
  add_batch_size_option(cmd, &a->batch_size, "sequences per forward (calibrate's --batch-size)");
  cmd->add_option("--seq-len", a->seq_len, "tokens per sequence")->check(CLI::PositiveNumber);
  cmd->add_option("--num-samples", a->num_samples, "calibration sequences (0: unknown / all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--criteria", a->criteria, "criteria to collect statistics for (default: calibrate's default)")
      ->delimiter(',');
  cmd->add_option("--collect", a->collect, "extra statistic groups (as calibrate --collect)")->delimiter(',');
  cmd->add_option("--budget", a->budget, "memory per rank, e.g. 8GiB, 16G, 512M, 1.5G (powers of 1024): prints the smallest P that fits");
  cmd->add_flag("--json", a->json, "print the plan as JSON (bytes)");
  cmd->callback([a] { run_plan(*a); });
}

}  // namespace moelab::cli
