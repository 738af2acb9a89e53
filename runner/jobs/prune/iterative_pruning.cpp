#include "runner/jobs/prune/iterative_pruning.h"

#include "core/common/error.h"
#include "core/common/log.h"
#include "core/models/expert_surgery.h"
#include "criteria/registry.h"

namespace moelab::jobs {

jobs::PruningPlan prune_iteratively(models::MoeModel& m, cluster::Communicator& comm, const jobs::CalibrationSet& set,
                                    const jobs::PlanOptions& opts, const jobs::CollectOptions& collect,
                                    const LotteryOptions& lottery) {
  if (lottery.enabled && lottery.data.empty()) throw InputError("--finetune-data", "MoE Lottery needs fine-tuning text");
  if (lottery.enabled && lottery.start_tokens <= 0) throw InputError("--lottery-start-tokens", "must be positive");
  jobs::check_plan_options(opts, m);
  if (opts.scope != results::PruneScope::kUniform) throw InputError("--scope", "the iterative procedure prunes per layer (uniform scope)");
  if (opts.reduce_top_k) throw InputError("--reduce-top-k", "not available with the iterative procedure");
  auto criterion = criteria::make_criterion(opts.criterion);
  const std::set<std::string> groups = criteria::stat_groups_needed({criterion->name()});
  const bool min_dir = opts.direction == results::PruneDirection::kMin;

  jobs::PruningPlan plan;
  plan.model = m.config.path;
  plan.architecture = m.config.architecture;
  plan.criterion = criterion->name();
  plan.direction = opts.direction;
  plan.ratio = opts.ratio;
  plan.layer_ratios = opts.layer_ratios;
  plan.procedure = to_string(lottery.enabled ? results::Procedure::kLottery : results::Procedure::kIterative);
  plan.experts_per_token = m.config.num_experts_per_tok;
  std::map<int64_t, int64_t> target;  // experts each layer ends with
  for (const auto& [l, n] : jobs::drop_counts(opts, m)) {
    const int64_t E = m.layers[l].moe->num_experts();
    target[l] = E - n;
    if (target[l] < m.config.num_experts_per_tok)
      throw InputError("--ratio", "layer " + std::to_string(l) + " would keep " + std::to_string(target[l]) +
                                      " experts, fewer than top-k = " + std::to_string(m.config.num_experts_per_tok));
    plan.layers[l].num_experts = E;
  }

  for (int64_t round = 1;; ++round) {
    std::vector<int64_t> layers;
    for (const auto& [l, t] : target)
      if (m.layers[l].moe->num_experts() > t) layers.push_back(l);
    if (layers.empty()) break;
    spdlog::info("round {}: re-collecting {} statistics on the pruned model ({} layer(s) above target)", round,
                 criterion->name(), layers.size());
    const results::CalibrationStats st = jobs::collect_statistics(m, comm, set, groups, collect);
    criteria::ScoreInputs in;
    in.stats = &st;
    in.model = &m;
    models::ExpertDrops drops;
    std::map<int64_t, std::vector<int64_t>> dropped_original;
    for (size_t i = 0; i < st.layers.size(); ++i) {
      const int64_t l = st.layers[i].layer;
      if (std::find(layers.begin(), layers.end(), l) == layers.end()) continue;
      at::Tensor s = criterion->score_layer(in, int64_t(i), l).to(at::kDouble).contiguous();
      const double* v = s.data_ptr<double>();
      int64_t pick = 0;
      for (int64_t e = 1; e < s.numel(); ++e)
        if (min_dir ? v[e] < v[pick] : v[e] > v[pick]) pick = e;
      drops[l] = {pick};
      const int64_t original = m.layers[l].moe->original_ids[pick];
      dropped_original[l] = {original};
      spdlog::info("round {}: layer {} drops expert {} (checkpoint id {}, {} = {:.6g}); {} left", round, l, pick,
                   original, criterion->name(), v[pick], s.numel() - 1);
    }
    models::remove_experts(m, drops);
    plan.rounds.push_back(std::move(dropped_original));
    if (lottery.enabled) {
      // Budget doubling from start_tokens; a fresh optimizer (state reset) each round.
      const int64_t budget = lottery.start_tokens << (round - 1);
      jobs::FinetuneOptions ft = lottery.finetune;
      const int64_t per_step = ft.batch_size * lottery.seq_len;
      ft.steps = (budget + per_step - 1) / per_step;
      ft.seed = lottery.finetune.seed + uint64_t(round);
      ft.checkpoint_dir.clear();
      ft.resume = false;
      spdlog::info("round {}: MoE Lottery fine-tuning, {} tokens ({} steps of {} sequences)", round, budget, ft.steps,
                   ft.batch_size);
      const auto curve = jobs::finetune(m, comm, lottery.data, ft);
      spdlog::info("round {}: fine-tuning loss {:.5f} -> {:.5f}", round, curve.front().loss, curve.back().loss);
    }
  }
  // The plan on the original checkpoint's ids: what survived.
  for (auto& [l, lp] : plan.layers) {
    lp.keep = m.layers[l].moe->original_ids;
    std::sort(lp.keep.begin(), lp.keep.end());
    lp.drop.clear();
    for (int64_t e = 0; e < lp.num_experts; ++e)
      if (!std::binary_search(lp.keep.begin(), lp.keep.end(), e)) lp.drop.push_back(e);
  }
  return plan;
}

}  // namespace moelab::jobs
