// AIMER, absolute mean over root mean square (Liu et al., "AIMER: Calibration-Free
// Task-Agnostic MoE Pruning", arXiv 2603.18492): a weight-only score, no calibration,
//
//   AIMER_j = mean(|w|) / sqrt(mean(w^2))   over the entries w of expert j's weights,
//
// in (0, 1]: 1 for weights of one magnitude, sqrt(2/pi) ~ 0.80 for Gaussian weights,
// lower for heavy-tailed ones (a few large weights among many small).
//
// Reading implemented: the gate [F, D], up [F, D] and down [D, F] matrices together, as
// one set of 3 F D entries (the authors' code, github.com/ZongfangLiu/AIMER,
// src/calib_free_prune.py `_aimer_scores_and_rank`: sums of |w| and w^2 over the three
// matrices, then the ratio), in float64 (the authors compute in float32). An all-zero
// expert scores 0.
// Direction: the authors prune the HIGHEST scores (their ranking sorts descending and
// drops its head; their README: "Higher AIMER scores are treated as more removable"),
// i.e. Max-AIMER keeps the experts with the most heavy-tailed weights. moelab, like for
// every criterion, leaves the direction to the user; Max-AIMER is the paper's.
//
// Per-matrix option, AIMER-<gate|up|down|mean>: the ratio of one matrix alone, or the
// mean over the three matrices of their own ratios.

#include "core/common/error.h"
#include "criteria/registry.h"
#include "criteria/stats_access.h"
#include "criteria/weight_chunks.h"

namespace moelab::criteria {
namespace {

// Which entries: all three matrices together, one of them, or the mean of the three ratios.
enum class Matrices { kAll, kGate, kUp, kDown, kMean };

// mean|w| / rms(w) of each expert of `w_E` ([E, ...], any float dtype), float64 [E].
at::Tensor abs_mean_over_rms(const std::vector<at::Tensor>& parts, int64_t E) {
  at::Tensor abs_sum = at::zeros({E}, at::kDouble), sq_sum = at::zeros({E}, at::kDouble);
  int64_t n = 0;
  for (const at::Tensor& t : parts) {
    n += t.numel() / std::max<int64_t>(E, 1);
    for_each_f64_chunk(t, [&](const at::Tensor& x) {
      abs_sum += x.abs().sum(1).cpu();
      sq_sum += x.square().sum(1).cpu();
    });
  }
  const double count = double(std::max<int64_t>(n, 1));
  at::Tensor rms = (sq_sum / count).sqrt();
  return at::where(rms > 0, (abs_sum / count) / rms.clamp_min(1e-300), at::zeros_like(rms));
}

class Aimer : public Criterion {
 public:
  Aimer(Matrices m, std::string name) : m_(m), name_(std::move(name)) {}
  std::string name() const override { return name_; }
  std::string description() const override {
    switch (m_) {
      case Matrices::kAll: return "mean |w| / rms(w) over gate, up and down together (AIMER; paper prunes Max)";
      case Matrices::kMean: return "mean over gate, up, down of mean |w| / rms(w) (AIMER per matrix)";
      default: return "mean |w| / rms(w) of one matrix (AIMER per matrix)";
    }
  }
  std::vector<std::string> needs() const override { return {kNeedsWeights}; }
  at::Tensor score_layer(const ScoreInputs& in, int64_t, int64_t layer) const override {
    const auto& w = layer_experts(in.model, layer, name_);
    const int64_t E = w.num_experts(), F = w.down_EDF.size(2);
    const at::Tensor gate = w.gate_up_EFD.narrow(1, 0, F), up = w.gate_up_EFD.narrow(1, F, F);
    switch (m_) {
      case Matrices::kAll: return abs_mean_over_rms({gate, up, w.down_EDF}, E);
      case Matrices::kGate: return abs_mean_over_rms({gate}, E);
      case Matrices::kUp: return abs_mean_over_rms({up}, E);
      case Matrices::kDown: return abs_mean_over_rms({w.down_EDF}, E);
      case Matrices::kMean:
        return (abs_mean_over_rms({gate}, E) + abs_mean_over_rms({up}, E) + abs_mean_over_rms({w.down_EDF}, E)) / 3;
    }
    return {};
  }

 private:
  Matrices m_;
  std::string name_;
};

}  // namespace

std::unique_ptr<Criterion> make_aimer() { return std::make_unique<Aimer>(Matrices::kAll, "AIMER"); }

CriterionPattern pattern_aimer_per_matrix() {
  CriterionPattern c;
  c.syntax = "AIMER-<gate|up|down|mean>";
  c.needs = kNeedsWeights;
  c.description = "AIMER of one matrix, or the mean of the three matrices' ratios";
  c.parse = [](const std::string& name) -> std::unique_ptr<Criterion> {
    const auto canonical = pattern_name_aimer_per_matrix(name);  // "AIMER-<matrix>" (catalog.h)
    if (!canonical) return nullptr;
    const std::string which = canonical->substr(6);
    const Matrices mat = which == "gate" ? Matrices::kGate
                         : which == "up" ? Matrices::kUp
                         : which == "down" ? Matrices::kDown
                                           : Matrices::kMean;
    return std::make_unique<Aimer>(mat, *canonical);
  };
  return c;
}

}  // namespace moelab::criteria
