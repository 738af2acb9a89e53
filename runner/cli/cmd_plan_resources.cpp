// moelab plan-resources: the memory one rank of `moelab calibrate` needs, from
// config.json alone (jobs/resource_plan.h), and the smallest rank count that fits a
// budget. No weight file is opened.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <optional>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/error.h"
#include "criteria/registry.h"
#include "jobs/layerwise_calibration.h"
#include "jobs/memory_budget.h"
#include "jobs/resource_plan.h"
#include "models/moe_model.h"
#include "results/calibration_stats.h"

namespace moelab::cli {
namespace {

struct PlanArgs {
  std::string model_dir, dtype = "auto", budget, memory_budget;
  int ranks = 1;
  int64_t batch_size = 8, seq_len = 512, num_samples = 128;
  std::vector<std::string> criteria, collect;
  bool layerwise = false, json = false;
};

// The statistic groups calibrate would collect for these --criteria / --collect
// (cmd_calibrate.cpp does the same: layer by layer, the default set leaves out
// act_outliers, and groups that need the whole model are refused).
std::set<std::string> groups_of(const PlanArgs& a) {
  std::set<std::string> groups = criteria::stat_groups_needed(a.criteria);
  if (a.layerwise && a.criteria.empty()) groups.erase(results::stat::kActOutliers);
  const auto& all = results::all_stat_groups();
  for (const auto& g : a.collect) {
    if (std::find(all.begin(), all.end(), g) == all.end())
      throw InputError("--collect", "unknown statistic group \"" + g + "\"");
    groups.insert(g);
  }
  groups.insert(results::stat::kUsage);
  if (a.layerwise) jobs::check_layerwise_groups(groups);
  return groups;
}

nlohmann::json rank_json(const jobs::RankPlan& r) {
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
  jobs::ResourceQuery q;
  q.dtype = a.dtype;
  jobs::dtype_bytes(q.dtype);  // checked before reading anything
  q.ranks = a.ranks;
  q.batch_size = a.batch_size;
  q.seq_len = a.seq_len;
  q.num_samples = a.num_samples;
  q.layerwise = a.layerwise;
  const int64_t budget = a.budget.empty() ? 0 : jobs::parse_byte_size("--budget", a.budget);
  q.groups = groups_of(a);
  q.budget = budget;
  if (!a.memory_budget.empty()) {
    if (!a.layerwise) throw InputError("--memory-budget", "needs --layerwise (as calibrate's)");
    q.memory_budget = jobs::parse_byte_size("--memory-budget", a.memory_budget);
  }
  const hf::ModelConfig c = models::load_config(a.model_dir);
  const jobs::ResourcePlan plan = jobs::plan_resources(c, q);
  std::optional<int> fits;
  if (budget > 0) {
    fits = jobs::smallest_ranks_within(c, q, budget);
    if (!fits) {
      jobs::ResourceQuery most = q;
      most.ranks = jobs::max_useful_ranks(c);
      const int64_t least = jobs::plan_resources(c, most).peak;
      throw InputError("--budget", a.budget + " (" + jobs::format_bytes(budget) +
                                       ") is below the smallest possible peak per rank, " + jobs::format_bytes(least) +
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
                        {"mode", q.layerwise ? "layerwise" : "whole"},
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
    if (q.layerwise) j["memory_budget"] = jobs::layerwise_memory_budget(q);
    std::cout << j.dump(1) << "\n";
    return;
  }
  std::printf("%s: %s, %lld layers (%lld MoE), %lld routed experts at most per layer, top-%lld\n", a.model_dir.c_str(),
              c.architecture.c_str(), static_cast<long long>(c.num_hidden_layers), static_cast<long long>(moe_layers),
              static_cast<long long>(jobs::max_useful_ranks(c)), static_cast<long long>(c.num_experts_per_tok));
  std::printf("calibrate on %d rank(s), %s, %s: %lld x %lld tokens per forward, %s sequences; statistics: %s\n",
              q.ranks, q.layerwise ? "layer by layer" : "whole model", q.dtype == "auto" ? "float32" : q.dtype.c_str(),
              static_cast<long long>(std::min(q.batch_size, q.num_samples > 0 ? q.num_samples : q.batch_size)),
              static_cast<long long>(q.seq_len),
              q.num_samples > 0 ? std::to_string(q.num_samples).c_str() : "all", groups.c_str());
  if (q.layerwise) {
    const int64_t mb = jobs::layerwise_memory_budget(q);
    std::printf("layer by layer: one decoder layer's weights resident at a time (shared and experts: the largest "
                "layer on the rank), no embedding or lm_head; calibrate --memory-budget %s\n",
                mb > 0 ? jobs::format_bytes(mb).c_str() : "none (hidden states in memory)");
  }
  std::printf("\n%-5s %-8s %10s %10s %10s %10s %10s %10s %10s %10s\n", "rank", "held", "baseline", "shared",
              "ckpt-pages", "experts", "activation", "statistics", "hidden", "total");
  for (const auto& r : plan.ranks) {
    auto f = [](int64_t b) { return jobs::format_bytes(b); };
    std::printf("%-5d %-8lld %10s %10s %10s %10s %10s %10s %10s %10s\n", r.rank, static_cast<long long>(r.experts_held),
                f(r.baseline).c_str(), f(r.shared).c_str(), f(r.checkpoint).c_str(), f(r.experts).c_str(),
                f(r.activations).c_str(), f(r.statistics).c_str(), f(r.hidden_states).c_str(), f(r.total()).c_str());
  }
  std::printf("\npeak per rank: %s; HDF5 output (rank 0 writes): at most %s", jobs::format_bytes(plan.peak).c_str(),
              jobs::format_bytes(plan.hdf5_bytes).c_str());
  if (plan.scratch_bytes > 0)
    std::printf("; hidden states in a scratch file (--scratch-dir): %s", jobs::format_bytes(plan.scratch_bytes).c_str());
  std::printf("\n");
  if (budget > 0)
    std::printf("budget %s (%s per rank): the smallest rank count that fits is P = %d\n", a.budget.c_str(),
                jobs::format_bytes(budget).c_str(), *fits);
}

}  // namespace

void add_plan_resources_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "plan-resources",
      "Estimate the peak memory per rank of `moelab calibrate` from config.json alone (no weights are\n"
      "read), and the smallest rank count P that fits a budget. Sweeps run the same estimate before\n"
      "running or submitting a calibration job and refuse one that exceeds its resources' mem.\n\n"
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
      "less the baseline. Both modes are within 15% of the measured peak RSS (bench/RESULTS.md).\n\n"
      "Examples:\n"
      "  moelab plan-resources models/debian-moe --ranks 2\n"
      "  moelab plan-resources configs/shapes/mixtral-8x7b --ranks 8 --dtype bfloat16 --seq-len 2048 --budget 64GiB\n"
      "  moelab plan-resources configs/shapes/mixtral-8x7b --ranks 4 --layerwise --criteria EAN,REAP --json\n"
      "  (configs/shapes/: config.json alone of real models, for planning before a download)");
  auto a = std::make_shared<PlanArgs>();
  cmd->add_option("model", a->model_dir, "model directory (only its config.json is read)")->required();
  cmd->add_option("--ranks", a->ranks, "ranks P the calibration would run on (this command itself runs on one)")
      ->check(CLI::Range(1, 4096));
  cmd->add_flag("--layerwise", a->layerwise, "layer-by-layer calibration (calibrate --layerwise)");
  cmd->add_option("--memory-budget", a->memory_budget,
                  "with --layerwise: calibrate's --memory-budget (e.g. 8G), which decides whether the hidden "
                  "states go to a scratch file");
  cmd->add_option("--dtype", a->dtype, "compute dtype: auto (float32), float32, bfloat16, float16, float64");
  cmd->add_option("--batch-size", a->batch_size, "sequences per forward (calibrate's --batch-size)")
      ->check(CLI::PositiveNumber);
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
