#include "models/expert_surgery.h"

#include <algorithm>
#include <set>

#include "common/error.h"

namespace moelab::models {

void remove_experts(MoeModel& m, const ExpertDrops& drops) {
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
  for (const auto& [l, keep] : keep_of) {
    ExpertWeights& w = *m.layers[l].moe;
    std::vector<int64_t> kept_ids;
    for (int64_t e : keep) kept_ids.push_back(w.original_ids[e]);
    at::Tensor idx = at::tensor(keep, at::TensorOptions().dtype(at::kLong)).to(w.router_ED.device());
    w.router_ED = w.router_ED.index_select(0, idx);
    w.gate_up_EFD = w.gate_up_EFD.index_select(0, idx);
    w.down_EDF = w.down_EDF.index_select(0, idx);
    if (w.theta_ED.defined()) w.theta_ED = w.theta_ED.index_select(0, idx);  // dropped experts' theta rows go
    w.original_ids = kept_ids;
    c.num_experts_per_layer[l] = int64_t(keep.size());
  }
}

}  // namespace moelab::models
