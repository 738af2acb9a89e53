#include "runner/jobs/prune/merge_plan.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/common/atomic_output.h"
#include "core/common/error.h"
#include "core/common/json_file.h"
#include "criteria/registry.h"
#include "criteria/scoring.h"
#include "runner/jobs/prune/ream_grouping.h"

namespace moelab::jobs {
namespace {

// [E, E] float64: 1 - cos(f_i, f_j); cos = 0 when either row is zero.
std::vector<std::vector<double>> cosine_distances(const at::Tensor& features_ED) {
  at::Tensor f = features_ED.to(at::kDouble).contiguous();
  at::Tensor dots = at::matmul(f, f.t());
  const int64_t E = f.size(0);
  std::vector<double> norm(E);
  for (int64_t i = 0; i < E; ++i) norm[i] = std::sqrt(dots[i][i].item<double>());
  std::vector<std::vector<double>> d(E, std::vector<double>(E, 0.0));
  auto acc = dots.accessor<double, 2>();
  for (int64_t i = 0; i < E; ++i)
    for (int64_t j = 0; j < E; ++j) {
      if (i == j) continue;
      const double cos = norm[i] > 0 && norm[j] > 0 ? acc[i][j] / (norm[i] * norm[j]) : 0.0;
      d[i][j] = 1.0 - cos;
    }
  return d;
}

std::string lacks(const std::string& group, const std::string& why) {
  return "lacks the \"" + group + "\" statistics (" + why + "); collect them with: moelab calibrate MODEL --data FILE "
         "--collect " + group;
}

}  // namespace

models::RouterMerge parse_router_merge(const std::string& s, const std::string& what) {
  if (s == "avg") return models::RouterMerge::kAverage;
  if (s == "dominant") return models::RouterMerge::kDominant;
  throw InputError(what, "router merge \"" + s + "\" is not avg or dominant");
}

std::vector<std::vector<int64_t>> average_linkage_groups(const at::Tensor& features_ED, int64_t num_groups) {
  const auto dist = cosine_distances(features_ED);
  std::vector<std::vector<int64_t>> groups;
  for (int64_t e = 0; e < int64_t(dist.size()); ++e) groups.push_back({e});
  while (int64_t(groups.size()) > std::max<int64_t>(num_groups, 1)) {
    // The closest pair of groups: mean distance over their pairs of members. Groups stay
    // ordered by smallest member; a strictly smaller distance wins, so ties go to the
    // pair met first (smallest ids).
    double best = std::numeric_limits<double>::infinity();
    size_t ba = 0, bb = 1;
    for (size_t a = 0; a < groups.size(); ++a)
      for (size_t b = a + 1; b < groups.size(); ++b) {
        double sum = 0;
        for (int64_t i : groups[a])
          for (int64_t j : groups[b]) sum += dist[i][j];
        const double mean = sum / double(groups[a].size() * groups[b].size());
        if (mean < best) {
          best = mean;
          ba = a;
          bb = b;
        }
      }
    groups[ba].insert(groups[ba].end(), groups[bb].begin(), groups[bb].end());
    std::sort(groups[ba].begin(), groups[ba].end());
    groups.erase(groups.begin() + int64_t(bb));  // ba < bb: ba keeps the smaller first member
  }
  return groups;
}

MergePlan plan_merges(const models::MoeModel& m, const results::CalibrationStats& st, const MergeOptions& o,
                      const std::string& stats_path) {
  if (!(o.ratio >= 0 && o.ratio < 1))
    throw InputError("--ratio", std::to_string(o.ratio) + " is outside [0, 1) (the fraction of experts merged away)");
  (void)parse_router_merge(o.router_merge, "--router-merge");
  if (o.method != "hc-smoe" && o.method != "ream")
    throw InputError("--method", "\"" + o.method + "\" is not a merge method (hc-smoe, ream)");
  const bool ream = o.method == "ream";
  if (ream && !st.collected.count(results::stat::kOutNorms))
    throw InputError(stats_path, lacks(results::stat::kOutNorms, "REAP saliency, REAM's centroids and weights"));
  // Groups first: the model check below reads tokens_E.
  if (!st.collected.count(results::stat::kUsage))
    throw InputError(stats_path, lacks(results::stat::kUsage, "tokens per expert, the merge weights"));
  if (!st.collected.count(results::stat::kDenseOutputs))
    throw InputError(stats_path, lacks(results::stat::kDenseOutputs, "mean expert outputs over all tokens"));
  criteria::check_stats_match(st, m.config, stats_path);

  MergePlan p;
  p.architecture = m.config.architecture;
  p.stats = stats_path;
  p.ratio = o.ratio;
  p.method = o.method;
  p.router_merge = o.router_merge;
  const auto reap = criteria::make_criterion("REAP");
  criteria::ScoreInputs reap_in;
  reap_in.stats = &st;
  int64_t moe_index = 0;
  p.experts_per_token = m.config.num_experts_per_tok;
  for (const auto& s : st.layers) {
    const int64_t E = s.tokens_E.size(0);
    const at::Tensor& out = s.dense_out_sum_ED;
    if (out.dim() != 2 || out.size(1) != m.config.hidden_size)
      throw InputError(stats_path, "dense_out_sum_ED of layer " + std::to_string(s.layer) + " is not [E, " +
                                       std::to_string(m.config.hidden_size) + "] (the model's hidden size)");
    const int64_t keep = E - std::llround(o.ratio * double(E));
    if (keep < m.config.num_experts_per_tok)
      throw InputError("--ratio", "layer " + std::to_string(s.layer) + " would keep " + std::to_string(keep) +
                                      " experts, fewer than top-k = " + std::to_string(m.config.num_experts_per_tok));
    LayerMerge lm;
    lm.num_experts = E;
    if (ream) {
      ReamGroups g = ream_groups(out, reap->score_layer(reap_in, moe_index++, s.layer), keep);
      lm.groups = std::move(g.groups);
      lm.weights = std::move(g.weights);
      lm.dominant = std::move(g.centroids);
      p.layers[s.layer] = std::move(lm);
      continue;
    }
    ++moe_index;
    lm.groups = average_linkage_groups(out, keep);
    const at::Tensor tokens = s.tokens_E.to(at::kLong).contiguous();
    const int64_t* n = tokens.data_ptr<int64_t>();
    for (const auto& g : lm.groups) {
      double total = 0;
      int64_t dominant = g[0];
      for (int64_t e : g) {
        total += double(n[e]);
        if (n[e] > n[dominant]) dominant = e;  // ties: the lower id (g is ascending)
      }
      std::vector<double> w;
      for (int64_t e : g) w.push_back(total > 0 ? double(n[e]) / total : 1.0 / double(g.size()));
      lm.weights.push_back(std::move(w));
      lm.dominant.push_back(dominant);
    }
    p.layers[s.layer] = std::move(lm);
  }
  return p;
}

void check_merge_plan(const MergePlan& p, const models::MoeModel& m, const std::string& path) {
  const auto layers = m.config.moe_layer_experts();
  bool ok = p.layers.size() == layers.size() && (p.architecture.empty() || p.architecture == m.config.architecture);
  for (const auto& [l, E] : layers) ok = ok && p.layers.count(l) && p.layers.at(l).num_experts == E;
  if (!ok)
    throw InputError(path, "was made for a different model (" + p.model + ", " + p.architecture +
                               "): its MoE layers or expert counts differ from " + m.config.path);
  for (const auto& [l, lm] : p.layers)
    if (lm.weights.size() != lm.groups.size() || lm.dominant.size() != lm.groups.size())
      throw InputError(path, "layer " + std::to_string(l) +
                                 ": \"groups\", \"weights\" and \"dominant\" differ in length");
}

models::ExpertMerges to_expert_merges(const MergePlan& p) {
  models::ExpertMerges out;
  for (const auto& [l, lm] : p.layers)
    for (size_t g = 0; g < lm.groups.size(); ++g)
      out[l].push_back({lm.groups[g], lm.weights.at(g), lm.dominant.at(g)});
  return out;
}

}  // namespace moelab::jobs
