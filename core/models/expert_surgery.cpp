#include "core/models/expert_surgery.h"

#include <algorithm>
#include <set>

#include "core/common/error.h"
#include "core/common/log.h"

namespace moelab::models {

namespace {

// Whether grouped routing (DeepSeek n_group > 1) survives: in every MoE layer each of
// the n_group contiguous expert groups keeps the same number of experts (and at least
// one), so that the survivors, in order, still fall into n_group equal groups made of
// the same experts. keep_of: the kept experts of the layers being pruned.
bool groups_survive(const MoeModel& m, const std::map<int64_t, std::vector<int64_t>>& keep_of) {
  const auto& c = m.config;
  if (!c.router.grouped()) return true;
  for (const auto& [l, keep] : keep_of) {
    const int64_t size = m.layers[l].moe->num_experts() / c.router.n_group;
    std::vector<int64_t> kept(c.router.n_group, 0);
    for (int64_t e : keep) ++kept[e / size];
    // DeepSeek-V3 ranks a group by its two best scores: groups need two experts.
    const int64_t min_size = c.router.topk_method == hf::TopKMethod::kNoauxTc ? 2 : 1;
    for (int64_t g = 0; g < c.router.n_group; ++g)
      if (kept[g] != kept[0] || kept[g] < min_size) return false;
    // The kept groups must still hold k experts.
    if (kept[0] * c.router.topk_group < c.num_experts_per_tok) return false;
  }
  return true;
}

// Rows idx [k] (int64, CPU) of t along its first axis. A model's shell (meta tensors,
// core/models/layer_loader.h: pruning by checkpoint surgery) gets the shape alone, as meta
// tensors have no index_select.
at::Tensor keep_rows(const at::Tensor& t, const at::Tensor& idx) {
  if (t.is_meta()) {
    std::vector<int64_t> shape = t.sizes().vec();
    shape[0] = idx.size(0);
    return at::empty(shape, t.options());
  }
  return t.index_select(0, idx.to(t.device()));
}

}  // namespace

void remove_experts(MoeModel& m, const ExpertDrops& drops) {
  if (m.config.has_novices())
    throw InputError(m.config.path, "has MoNE novices (\"moelab_novices_per_layer\"): prune the model they were made from");
  auto& c = m.config;
  const std::string what = "expert drop list";
  // Validate every layer before changing any, so a bad list leaves the model intact.
  std::map<int64_t, std::vector<int64_t>> keep_of;
  for (const auto& [l, experts] : drops) {
    if (l < 0 || l >= c.num_hidden_layers)
      throw InputError(what, "layer " + std::to_string(l) + " does not exist (model has " +
                                 std::to_string(c.num_hidden_layers) + " layers)");
    if (!m.layers[l].moe) throw InputError(what, "layer " + std::to_string(l) + " is a dense layer, it has no experts");
    ExpertWeights& w = *m.layers[l].moe;
    const int64_t E = w.num_experts();
    if (!w.all_local()) throw InputError(what, "removing experts needs all experts in one process (no expert parallelism)");
    std::set<int64_t> drop;
    for (int64_t e : experts) {
      if (e < 0 || e >= E)
        throw InputError(what, "layer " + std::to_string(l) + " has no expert " + std::to_string(e) + " (it has " +
                                   std::to_string(E) + ")");
      if (!drop.insert(e).second)
        throw InputError(what, "layer " + std::to_string(l) + " lists expert " + std::to_string(e) + " twice");
    }
    if (E - int64_t(drop.size()) < c.num_experts_per_tok)
      throw InputError(what, "layer " + std::to_string(l) + " would keep " + std::to_string(E - drop.size()) +
                                 " experts, fewer than num_experts_per_tok = " + std::to_string(c.num_experts_per_tok));
    for (int64_t e = 0; e < E; ++e)
      if (!drop.count(e)) keep_of[l].push_back(e);
  }
  const bool keep_groups = groups_survive(m, keep_of);
  for (const auto& [l, keep] : keep_of) {
    ExpertWeights& w = *m.layers[l].moe;
    std::vector<int64_t> kept_ids;
    for (int64_t e : keep) kept_ids.push_back(w.original_ids[e]);
    const at::Tensor idx = at::tensor(keep, at::TensorOptions().dtype(at::kLong));
    w.router_ED = keep_rows(w.router_ED, idx);
    w.gate_up_EFD = keep_rows(w.gate_up_EFD, idx);
    w.down_EDF = keep_rows(w.down_EDF, idx);
    // Dropped experts' compressed-expert vectors (ces or theta) and DeepSeek-V3 correction
    // biases go with them; gpt-oss: the router bias and the experts' biases too.
    for (at::Tensor* t : {&w.ces_E3W, &w.theta_ED, &w.correction_bias_E, &w.router_bias_E, &w.gate_up_bias_EF,
                          &w.down_bias_ED})
      if (t->defined()) *t = keep_rows(*t, idx);
    w.original_ids = kept_ids;
    c.num_experts_per_layer[l] = int64_t(keep.size());
  }
  if (!keep_groups) {
    spdlog::warn("grouped routing ({}: n_group {}, topk_group {}) cannot be kept: some expert group lost more experts "
                 "than another in a layer; the pruned model routes over all its experts (n_group = topk_group = 1)",
                 hf::to_string(c.router.topk_method), c.router.n_group, c.router.topk_group);
    c.router.n_group = 1;
    c.router.topk_group = 1;
  }
}

}  // namespace moelab::models
