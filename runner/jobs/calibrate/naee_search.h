// NAEE expert-subset search (Lu et al. 2024, "Not All Experts are Equal",
// github.com/Lucky-Lance/Expert_Sparsity, method/expert_pruning.py): per MoE layer,
// the subset of experts to keep that minimises the reconstruction error of the
// layer's output over the calibration set, with the dropped experts' router logits
// set to -inf (so top-k and its renormalisation run over the survivors, exactly as
// in the pruned model).
//
// Reading implemented:
//   error(S) = sum over calibration tokens x of ||Z(x) - Z_S(x)||_2^2   (float64)
// with Z the block's routed output with every expert and Z_S with only S routable.
// NAEE's code sums per-batch Frobenius norms ||Z - Z_S||; the squared error is the
// same search without depending on how tokens are batched (or split over ranks).
// Z and Z_S are built from a dense observation (every expert on every token, on
// inputs from the unpruned model; core/models/moe_model.h MoeObserver).
//
// Search: keep = E - round(ratio * E) experts. When C(E, keep) <= budget, every
// subset of that size is evaluated in one pass (NAEE's enumeration). Otherwise
// greedy backward elimination: each pass evaluates the current set minus each of its
// experts and drops the one whose removal costs least, E - keep passes in all.
#pragma once

#include <cstdint>
#include <vector>

#include "cluster/communicator.h"
#include "core/models/moe_model.h"
#include "results/calibration_stats.h"

namespace moelab::jobs {

struct NaeeOptions {
  double ratio = 0.5;     // fraction of each layer's experts dropped
  int64_t budget = 4096;  // most subsets evaluated per layer in one pass before going greedy
};

class NaeeSearch : public models::MoeObserver {
 public:
  NaeeSearch(const models::MoeModel& model, NaeeOptions opts);

  bool wants_all_expert_outputs() const override { return !done(); }
  void on_all_expert_outputs(int64_t layer, const at::Tensor& router_logits_NE, const at::Tensor& out_NED) override;

  // After each pass over the calibration set (collective): sums the ranks' errors;
  // greedy layers drop one expert. Then done() says whether another pass is needed.
  void finish_pass(cluster::Communicator& comm);
  bool done() const;
  // Passes the slowest layer needs in all (1 for enumeration, E - keep for greedy).
  int64_t passes_needed() const;
  // naee_subsets_SE / naee_loss_S for each MoE layer (in order). Enumeration: every
  // subset of size keep; greedy: the path, one subset per elimination step.
  void fill(std::vector<results::LayerStats>& layers) const;

 private:
  struct Layer {
    int64_t layer = 0, E = 0, keep = 0;
    bool greedy = false, finished = false;
    at::Tensor candidates_SE;       // bool: subsets evaluated in this pass
    at::Tensor error_S;             // f64: their errors so far in this pass
    at::Tensor path_SE, path_loss;  // what fill() writes
  };
  void set_greedy_candidates(Layer& L, const at::Tensor& current_E);
  std::vector<Layer> layers_;
  std::map<int64_t, size_t> slot_of_layer_;
  int64_t K_ = 0;
  bool renormalise_ = true;
};

}  // namespace moelab::jobs
