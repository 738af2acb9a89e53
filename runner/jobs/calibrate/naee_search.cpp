#include "runner/jobs/calibrate/naee_search.h"

#include "core/common/error.h"

#include <cmath>
#include <cstdio>
#include <limits>

namespace moelab::jobs {
namespace {

// C(n, k), saturating at `cap` + 1.
int64_t binomial_capped(int64_t n, int64_t k, int64_t cap) {
  k = std::min(k, n - k);
  long double c = 1;
  for (int64_t i = 1; i <= k; ++i) {
    c = c * (n - k + i) / i;
    if (c > cap) return cap + 1;
  }
  return int64_t(std::llround(c));
}

// Every subset of {0..E-1} of size k, as bool rows [C(E,k), E], in lexicographic order.
at::Tensor all_subsets(int64_t E, int64_t k) {
  std::vector<int64_t> idx(k);
  for (int64_t i = 0; i < k; ++i) idx[i] = i;
  std::vector<uint8_t> rows;
  while (true) {
    std::vector<uint8_t> row(E, 0);
    for (int64_t i : idx) row[i] = 1;
    rows.insert(rows.end(), row.begin(), row.end());
    int64_t i = k - 1;
    while (i >= 0 && idx[i] == E - k + i) --i;
    if (i < 0) break;
    ++idx[i];
    for (int64_t j = i + 1; j < k; ++j) idx[j] = idx[j - 1] + 1;
  }
  const int64_t S = int64_t(rows.size()) / E;
  return at::from_blob(rows.data(), {S, E}, at::kByte).clone().to(at::kBool);
}

// The routed output with only `mask_SE` experts routable, for every subset at once:
// [S, N, D] float64. Routing as core/models/moe_block.cpp: softmax over the routable
// logits in float32, top-k (k capped by the subset size), optional renormalisation.
at::Tensor routed_output(const at::Tensor& logits_NE, const at::Tensor& y_NED, const at::Tensor& mask_SE, int64_t K,
                         bool renormalise) {
  const int64_t S = mask_SE.size(0), N = logits_NE.size(0), E = logits_NE.size(1), D = y_NED.size(2);
  const int64_t k = std::min<int64_t>(K, mask_SE.sum(1).min().item<int64_t>());
  at::Tensor logits = logits_NE.to(at::kFloat).unsqueeze(0).expand({S, N, E});
  logits = logits.masked_fill(mask_SE.logical_not().unsqueeze(1), -std::numeric_limits<float>::infinity());
  auto [w, ids] = at::topk(at::softmax(logits, -1), k, -1);  // [S, N, k]
  if (renormalise) w = w / w.sum(-1, true);
  // y rows of the chosen experts: [S, N, k, D].
  at::Tensor rows = y_NED.unsqueeze(0).expand({S, N, E, D}).gather(2, ids.unsqueeze(-1).expand({S, N, k, D}));
  return (rows * w.to(at::kDouble).unsqueeze(-1)).sum(2);
}

}  // namespace

NaeeSearch::NaeeSearch(const models::MoeModel& model, NaeeOptions opts)
    : K_(model.config.num_experts_per_tok), renormalise_(model.config.router.norm_topk_prob) {
  // The search re-routes every candidate expert set with a plain softmax top-k (as
  // Mixtral / Qwen / OLMoE route); DeepSeek's router variants are not reproduced.
  const auto& c = model.config;
  if (!c.router.is_plain_softmax_topk())
    throw InputError(c.path, "NAEE's expert-set search re-routes by softmax top-k; " + model.family->name + "'s router (" +
                                 c.router.describe() + ") is not supported by NAEE");
  for (int64_t l = 0; l < model.config.num_hidden_layers; ++l) {
    if (!model.layers[l].moe) continue;
    Layer L;
    L.layer = l;
    L.E = model.layers[l].moe->num_experts();
    L.keep = std::clamp<int64_t>(L.E - std::llround(opts.ratio * double(L.E)), 1, L.E);
    L.path_SE = at::empty({0, L.E}, at::kBool);
    L.path_loss = at::empty({0}, at::kDouble);
    if (L.keep == L.E) {  // nothing dropped: the full set, error 0
      L.path_SE = at::ones({1, L.E}, at::kBool);
      L.path_loss = at::zeros({1}, at::kDouble);
      L.finished = true;
    } else if (binomial_capped(L.E, L.keep, opts.budget) <= opts.budget) {
      L.candidates_SE = all_subsets(L.E, L.keep);
    } else {
      L.greedy = true;
      set_greedy_candidates(L, at::ones({L.E}, at::kBool));
    }
    if (L.candidates_SE.defined()) L.error_S = at::zeros({L.candidates_SE.size(0)}, at::kDouble);
    slot_of_layer_[l] = layers_.size();
    layers_.push_back(std::move(L));
  }
}

void NaeeSearch::set_greedy_candidates(Layer& L, const at::Tensor& current_E) {
  // One candidate per expert still kept: the current set without it.
  at::Tensor members = current_E.nonzero().view(-1);
  L.candidates_SE = current_E.unsqueeze(0).repeat({members.size(0), 1});
  L.candidates_SE.index_put_({at::arange(members.size(0)), members}, false);
  L.error_S = at::zeros({members.size(0)}, at::kDouble);
}

void NaeeSearch::on_all_expert_outputs(int64_t layer, const at::Tensor& logits_NE, const at::Tensor& out_NED) {
  Layer& L = layers_[slot_of_layer_.at(layer)];
  if (L.finished || logits_NE.size(0) == 0) return;
  at::Tensor logits = logits_NE.to(at::kCPU, at::kFloat);
  at::Tensor y = out_NED.to(at::kCPU, at::kDouble);
  const int64_t N = y.size(0), D = y.size(2);
  at::Tensor z_ND = routed_output(logits, y, at::ones({1, L.E}, at::kBool), K_, renormalise_)[0];
  // Subsets in chunks that keep the [S, N, k, D] gather near 64 Mi values.
  const int64_t S = L.candidates_SE.size(0);
  const int64_t chunk = std::max<int64_t>(1, (int64_t(1) << 26) / std::max<int64_t>(1, N * K_ * D));
  for (int64_t s0 = 0; s0 < S; s0 += chunk) {
    const int64_t n = std::min(chunk, S - s0);
    at::Tensor zs = routed_output(logits, y, L.candidates_SE.narrow(0, s0, n), K_, renormalise_);
    L.error_S.narrow(0, s0, n) += (zs - z_ND.unsqueeze(0)).pow(2).sum({1, 2});
  }
}

void NaeeSearch::finish_pass(cluster::Communicator& comm) {
  for (Layer& L : layers_) {
    if (L.finished) continue;
    comm.all_reduce_sum(L.error_S);
    if (!L.greedy) {
      L.path_SE = L.candidates_SE;
      L.path_loss = L.error_S.clone();
      L.finished = true;
      continue;
    }
    // Greedy: keep the cheapest removal (first on ties, the same on every rank).
    const int64_t best = L.error_S.argmin().item<int64_t>();
    at::Tensor chosen = L.candidates_SE[best];
    L.path_SE = at::cat({L.path_SE, chosen.unsqueeze(0)}, 0);
    L.path_loss = at::cat({L.path_loss, L.error_S.narrow(0, best, 1)}, 0);
    if (chosen.sum().item<int64_t>() == L.keep)
      L.finished = true;
    else
      set_greedy_candidates(L, chosen.clone());
  }
}

bool NaeeSearch::done() const {
  for (const Layer& L : layers_)
    if (!L.finished) return false;
  return true;
}

int64_t NaeeSearch::passes_needed() const {
  int64_t p = 0;
  for (const Layer& L : layers_) p = std::max(p, L.finished ? 0 : L.greedy ? L.E - L.keep : 1);
  return p;
}

void NaeeSearch::fill(std::vector<results::LayerStats>& layers) const {
  for (size_t i = 0; i < layers_.size(); ++i) {
    layers.at(i).naee_subsets_SE = layers_[i].path_SE.to(at::kByte);
    layers.at(i).naee_loss_S = layers_[i].path_loss;
  }
}

}  // namespace moelab::jobs
