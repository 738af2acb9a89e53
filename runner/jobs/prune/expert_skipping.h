// NAEE dynamic skipping (Lu et al., "Not All Experts are Equal", ACL 2024): at inference,
// a token's routed expert other than its top-1 is not run when its gate weight is below
// beta times the top-1 gate (top-2 Mixtral: skip the second expert when g2 < beta * g1).
// The runtime rule is in core/models/moe_block.cpp (read from config.json, see
// hf::ModelConfig::skip_beta); this file estimates beta and writes the config.
//
// Beta per layer: NAEE's code (github.com/Lucky-Lance/Expert_Sparsity,
// method/dynamic_skipping.py) takes, for each layer separately, the median over the
// calibration tokens of w_1 / w_0 (softmax probabilities of all experts, sorted) and
// stores one beta per layer (`config.betas[str(layer)]`). We do the same from the
// `gate_ratios` histogram (results::kGateRatioBins bins over [0, 1]): the median of n
// values is the mean of the values of ranks floor((n-1)/2) and floor(n/2) (numpy's
// definition), each read as the centre of its bin, so the result is within half a bin
// (5e-4) of the exact median.
//
// Gates after skipping: NAEE's code zeroes the skipped gate and renormalises the rest
// (`routing_weights /= routing_weights.sum(...)`), so a Mixtral token that skips runs its
// top-1 expert with weight 1. That is moelab's default (`moelab_skip_renormalize`: true;
// the renormalisation is the family's own: Mixtral always, Qwen3 when norm_topk_prob);
// `--gates keep` writes false: the kept gates keep their unskipped values and the
// skipped expert's share of the output is simply lost.
#pragma once

#include <string>
#include <vector>

#include "core/hf/model_config.h"
#include "results/calibration_stats.h"

namespace moelab::jobs {

// Median of the values a histogram over [0, 1] counts (equal-width bins), as above.
// 0 for an empty histogram.
double median_from_histogram(const at::Tensor& hist_B);

// Fraction of the histogram's values below x (bins below x's bin count fully, x's bin
// in proportion): what share of calibration tokens beta = x would skip.
double fraction_below(const at::Tensor& hist_B, double x);

// One beta per decoder layer (dense layers 0) from statistics with `gate_ratios`
// collected on this model. InputError naming `stats_path` otherwise.
std::vector<double> skip_betas_from_stats(const hf::ModelConfig& config, const results::CalibrationStats& stats,
                                          const std::string& stats_path);

// A copy of `model_dir` at `out` (atomically) whose config.json carries
// `moelab_skip_beta` (one value per decoder layer) and `moelab_skip_renormalize`.
// transformers ignores both keys: it loads the copy as the unskipped model.
void write_skipping_model(const std::string& model_dir, const std::vector<double>& beta, bool renormalize,
                          const std::string& out, bool overwrite);

}  // namespace moelab::jobs
