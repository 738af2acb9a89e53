#include "runner/jobs/prune/budget_search.h"

#include <ATen/core/grad_mode.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "core/common/atomic_output.h"
#include "core/common/error.h"
#include "core/models/expert_surgery.h"
#include "core/models/next_token_loss.h"

namespace moelab::jobs {
namespace {

using Allocation = std::vector<int64_t>;  // drops per MoE layer, in layer order

// Right-padded batches of the held-out sequences (>= 2 tokens each).
struct Batch {
  at::Tensor ids_BT;
  std::vector<int64_t> lengths;
};

std::vector<Batch> make_batches(const std::vector<std::vector<int64_t>>& seqs, int64_t batch_size) {
  std::vector<Batch> out;
  for (size_t i = 0; i < seqs.size(); i += size_t(batch_size)) {
    const size_t end = std::min(seqs.size(), i + size_t(batch_size));
    int64_t T = 0;
    for (size_t j = i; j < end; ++j) T = std::max<int64_t>(T, seqs[j].size());
    Batch b;
    b.ids_BT = at::zeros({int64_t(end - i), T}, at::kLong);
    for (size_t j = i; j < end; ++j) {
      for (size_t t = 0; t < seqs[j].size(); ++t) b.ids_BT[int64_t(j - i)][int64_t(t)] = seqs[j][t];
      b.lengths.push_back(int64_t(seqs[j].size()));
    }
    out.push_back(std::move(b));
  }
  return out;
}

// The model's logits [B, T, V] on a batch, no graph.
at::Tensor logits_of(const models::MoeModel& m, const Batch& b) {
  at::NoGradGuard no_grad;
  return models::forward(m, b.ids_BT, b.lengths);
}

std::string key_of(const Allocation& a) {
  std::string s;
  for (int64_t d : a) s += std::to_string(d) + ",";
  return s;
}

}  // namespace

BudgetSearchResult search_layer_budgets(const models::MoeModel& model, const results::CriterionScores& scores,
                                        const PlanOptions& plan, const std::vector<std::vector<int64_t>>& held_out,
                                        const BudgetSearchOptions& o) {
  if (o.budget < 1) throw InputError("--search-budget", "must be at least 1 (the uniform allocation)");
  if (o.max_move < 1) throw InputError("--search-max-move", "must be at least 1");
  if (plan.scope != results::PruneScope::kUniform || !plan.layer_ratios.empty())
    throw InputError("--search-budget", "searches per-layer ratios itself: use the uniform scope, no --layer-ratio");
  std::vector<std::vector<int64_t>> seqs;
  for (const auto& s : held_out)
    if (s.size() >= 2) seqs.push_back(s);
  if (seqs.empty()) throw InputError("--search-data", "no held-out sequence of two tokens or more");

  // Each layer's drop order (the criterion's, as plan_from_scores; protected experts never).
  const auto layers = model.config.moe_layer_experts();
  std::vector<int64_t> layer_ids;
  std::vector<std::vector<int64_t>> order;
  Allocation uniform, cap;
  const auto counts = drop_counts(plan, model);
  const int64_t floor = plan.reduce_top_k ? 1 : model.config.num_experts_per_tok;
  for (const auto& [l, E] : layers) {
    const auto it = plan.protect.find(l);
    std::vector<int64_t> ord =
        drop_order(scores.layers.at(l), plan.direction, it == plan.protect.end() ? std::vector<int64_t>{} : it->second);
    layer_ids.push_back(l);
    cap.push_back(std::min<int64_t>(E - floor, ord.size()));
    uniform.push_back(std::min(counts.at(l), cap.back()));
    order.push_back(std::move(ord));
  }

  // The unpruned model's distributions, once.
  const std::vector<Batch> batches = make_batches(seqs, o.batch_size);
  std::vector<at::Tensor> reference;
  BudgetSearchResult r;
  for (const auto& b : batches) {
    reference.push_back(logits_of(model, b));
    r.targets += models::count_next_token_targets(b.lengths);
  }
  auto fitness_of = [&](const Allocation& a) {
    models::MoeModel m = model;  // tensors shared; remove_experts replaces the pruned layers' own
    models::ExpertDrops drops;
    int64_t min_kept = model.config.num_experts_per_tok;
    for (size_t i = 0; i < a.size(); ++i) {
      if (a[i] > 0) drops[layer_ids[i]] = std::vector<int64_t>(order[i].begin(), order[i].begin() + a[i]);
      min_kept = std::min<int64_t>(min_kept, layers.at(layer_ids[i]) - a[i]);
    }
    if (plan.reduce_top_k) m.config.num_experts_per_tok = std::max<int64_t>(1, min_kept);
    models::remove_experts(m, drops);
    double kl = 0;
    for (size_t i = 0; i < batches.size(); ++i)  // the distillation loss: KL(unpruned || candidate)
      kl += models::distillation_kl_sum(logits_of(m, batches[i]), reference[i], batches[i].lengths).item<double>();
    return kl / double(r.targets);
  };

  // Evaluations so far (resuming) and the header they must agree with.
  const nlohmann::json header = {{"criterion", scores.name},  {"direction", results::to_string(plan.direction)}, {"ratio", plan.ratio},
                                 {"seed", o.seed},            {"max_move", o.max_move},     {"targets", r.targets},
                                 {"reduce_top_k", plan.reduce_top_k}, {"layers", layer_ids}, {"uniform", uniform}};
  std::map<std::string, double> seen;
  std::vector<std::string> kept_lines;  // the state's valid entries, in order
  if (!o.state_path.empty() && std::filesystem::exists(o.state_path)) {
    std::ifstream in(o.state_path);
    std::string line;
    bool first = true;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception&) {
        break;  // a line cut by a kill: what precedes it stands
      }
      if (first) {
        if (j != header)
          throw InputError(o.state_path, "is the state of another search (criterion, ratio, seed, held-out data or "
                                         "layers differ): remove it or give another --search-state");
        first = false;
        continue;
      }
      if (!j.contains("drops") || !j.contains("fitness") || !j["drops"].is_array() || !j["fitness"].is_number()) break;
      seen[key_of(j["drops"].get<Allocation>())] = j["fitness"].get<double>();
      kept_lines.push_back(line);
    }
    r.resumed = int64_t(seen.size());
  }
  std::ofstream state;
  if (!o.state_path.empty()) {
    // Rewritten whole (without a line a kill cut short), then appended to as evaluations finish.
    {
      std::string text = header.dump() + "\n";
      for (const auto& l : kept_lines) text += l + "\n";
      write_file_atomic(o.state_path, text);
    }
    state.open(o.state_path, std::ios::app);
    if (!state) throw InputError(o.state_path, "cannot write the search state");
  }
  std::set<std::string> evaluated;
  auto evaluate = [&](const Allocation& a) {
    const std::string k = key_of(a);
    evaluated.insert(k);
    if (auto it = seen.find(k); it != seen.end()) return it->second;
    const double f = fitness_of(a);
    seen[k] = f;
    if (state.is_open()) state << nlohmann::json({{"drops", a}, {"fitness", f}}).dump() << "\n" << std::flush;
    return f;
  };

  Allocation best = uniform;
  double best_f = evaluate(uniform);
  r.uniform_fitness = best_f;
  std::mt19937_64 rng(o.seed);
  // Draws in a row that found no new allocation: past 64 x budget, the incumbent's
  // neighbourhood is exhausted.
  int64_t idle = 0;
  while (int64_t(evaluated.size()) < o.budget && idle < 64 * o.budget) {
    const size_t before = evaluated.size();
    std::vector<size_t> givers, takers;
    for (size_t i = 0; i < best.size(); ++i) {
      if (best[i] > 0) givers.push_back(i);
      if (best[i] < cap[i]) takers.push_back(i);
    }
    if (givers.empty() || takers.empty()) break;
    const size_t a = givers[rng() % givers.size()], b = takers[rng() % takers.size()];
    const int64_t want = 1 + int64_t(rng() % uint64_t(o.max_move));
    if (a == b) {
      ++idle;
      continue;
    }
    const int64_t move = std::min({want, best[a], cap[b] - best[b]});
    Allocation cand = best;
    cand[a] -= move;
    cand[b] += move;
    const double f = evaluate(cand);
    idle = evaluated.size() > before ? 0 : idle + 1;
    if (f < best_f) {
      best = cand;
      best_f = f;
      spdlog::info("budget search: {} evaluations, KL {:.6g} (uniform {:.6g})", evaluated.size(), best_f,
                   r.uniform_fitness);
    }
  }
  for (size_t i = 0; i < best.size(); ++i) r.drops[layer_ids[i]] = best[i];
  r.fitness = best_f;
  r.evaluations = int64_t(evaluated.size());
  return r;
}

}  // namespace moelab::jobs
