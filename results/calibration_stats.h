// Expert statistics from one calibration pass: the plain data type between
// `moelab calibrate` (which fills it, all-reduced over ranks) and `moelab score`
// (which reads it back from HDF5; schema in results/stats_schema.md).
//
// Every statistic is a SUM over routed (token, expert) pairs, never a mean, so that
// sums from several ranks add up exactly and any normalisation is the criterion's
// choice. Floating sums are float64; counts int64.
//
// Shape letters: E routed experts of the layer, F expert intermediate size,
// D hidden size, W = ceil(V / 8) bytes of a vocabulary bitmap, B histogram bins.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "results/stat_groups.h"  // stat::k*, kGateRatioBins, default_power_exponents

namespace moelab::results {

struct LayerStats {
  int64_t layer = 0;
  at::Tensor tokens_E;             // int64: tokens routed to the expert (top-k membership)
  at::Tensor gate_sum_E;           // f64: sum of gate weights g_j(x)
  at::Tensor act_norm_sum_E;       // f64: sum ||a_j(x)||_2, a = act(x Wg^T) * (x Wu^T)
  at::Tensor act_norm_sq_sum_E;    // f64: sum ||a_j(x)||_2^2
  at::Tensor out_norm_sum_E;       // f64: sum ||f_j(x)||_2 (expert output before gating)
  at::Tensor gate_out_norm_sum_E;  // f64: sum g_j(x) ||f_j(x)||_2 (REAP numerator)
  at::Tensor coactivation_EE;      // int64: tokens routed to both j and k (diagonal = tokens_E)
  at::Tensor token_bitmap_EW;      // uint8: bit v set if token id v was routed to the expert
  at::Tensor act_sum_EF;           // f64: per-channel sum of a_j(x)
  at::Tensor act_sq_sum_EF;        // f64: per-channel sum of a_j(x)^2
  at::Tensor easyep_sum_E;         // f64: sum g ||f|| max(0, 1 - cos(h_in, h_out)) (EASY-EP)
  at::Tensor act_outliers_E;       // int64: values a_jc(x) outside mean_jc +- 3 std_jc (second pass)
  // Gradients: G_j = d(mean next-token loss over the calibration set)/d(expert j's weights),
  // the gate, up and down matrices together (3 F D values). NOT sums over tokens: G_j
  // itself is the sum of every token's contribution.
  at::Tensor grad_sq_norm_E;          // f64: ||G_j||^2
  at::Tensor grad_gram_EE;            // f64: <G_j, G_k>
  at::Tensor grad_channel_sum_EF;     // f64: per intermediate channel c, the sum of its 3 D gradient
                                      // values (gate row c, up row c, down column c)
  at::Tensor grad_channel_sq_sum_EF;  // f64: the sum of their squares
  at::Tensor grad_outliers_E;         // int64: values outside their channel's mean +- 3 std
  // NAEE: candidate subsets of experts to keep and the reconstruction error of the
  // layer's output with only them, summed over calibration tokens: sum ||Z(x) - Z_S(x)||^2.
  at::Tensor naee_subsets_SE;         // uint8: 1 = kept
  at::Tensor naee_loss_S;             // f64
  // Dense observation (every expert on every token, not only its routed ones), for
  // output-similarity merging (HC-SMoE): sum over ALL calibration tokens x of f_j(x).
  // Its mean is dense_out_sum_ED / CalibrationStats::num_tokens.
  at::Tensor dense_out_sum_ED;        // f64
  // NAEE dynamic skipping: histogram over all tokens of p_2(x) / p_1(x), the router's
  // second-largest over its largest softmax probability (= g_2 / g_1 for top-k >= 2,
  // renormalised or not), kGateRatioBins bins over [0, 1].
  at::Tensor gate_ratio_hist_B;       // int64
  // The unified criteria family (Liu et al., arXiv 2606.15716): sum over the tokens routed
  // to j of g_j(x)^a ||v_j(x)||_2^p for v = a_j (index 0, intermediate activation [F]) and
  // v = f_j (index 1, expert output before gating [D]), a and p each over
  // CalibrationStats::power_exponents (X of them). 0^0 = 1, so a = p = 0 counts tokens.
  at::Tensor power_sum_EVXX;          // f64 [E, 2, X, X]: [e][v][index of a][index of p]
  // MoNE (Zhang et al., arXiv 2507.00390): per-channel sums over the tokens routed to j
  // of the expert output before gating, f_j(x), and of its square; the novice that
  // replaces j is the mean out_sum_ED[j] / tokens_E[j], the redundancy score uses the
  // per-channel variance.
  at::Tensor out_sum_ED;              // f64 [E, D]
  at::Tensor out_sq_sum_ED;           // f64 [E, D]
  // Super experts (Su et al., arXiv 2507.23279, as REAP's observer records them): the
  // largest of 0 and every value f_jc(x) of the expert's output over its routed tokens
  // and channels (signed, not absolute: REAP's `max_activations`). 0 for an expert that
  // received no token. Combined over ranks by max, not sum.
  at::Tensor out_max_E;               // f64 [E]
};

struct CalibrationStats {
  std::string model;              // model directory as given
  std::string architecture;       // config.json architectures[0]
  std::string calibration;        // calibration set description (files)
  std::string moelab_version;
  int64_t num_sequences = 0, num_tokens = 0, seq_len = 0, vocab_size = 0;
  int64_t hidden_size = 0;        // D (gradient channels hold 3 D values)
  uint64_t seed = 0;
  int64_t world_size = 1;
  bool norm_topk_prob = true;     // the router's normalisation (what gates mean)
  int64_t experts_per_token = 0;  // k
  std::set<std::string> collected;  // groups present (stat::k*)
  std::vector<double> power_exponents;  // the a and p of power_sum_EVXX (power_sums only)
  std::vector<LayerStats> layers;   // MoE layers only, in order

  const LayerStats& layer(int64_t index) const;
};

}  // namespace moelab::results
