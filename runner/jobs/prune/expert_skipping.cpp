#include "runner/jobs/prune/expert_skipping.h"

#include <algorithm>
#include <filesystem>

#include "core/common/atomic_output.h"
#include "core/common/error.h"
#include "criteria/scoring.h"

namespace fs = std::filesystem;

namespace moelab::jobs {
namespace {

// Centre of the bin holding the value of 0-based rank r (cum: inclusive cumulative counts).
double value_of_rank(const std::vector<int64_t>& cum, int64_t r) {
  const int64_t B = int64_t(cum.size());
  for (int64_t b = 0; b < B; ++b)
    if (cum[b] > r) return (double(b) + 0.5) / double(B);
  return 1.0;
}

}  // namespace

double median_from_histogram(const at::Tensor& hist_B) {
  at::Tensor h = hist_B.to(at::kLong).contiguous();
  std::vector<int64_t> cum(h.numel());
  int64_t n = 0;
  for (int64_t b = 0; b < h.numel(); ++b) cum[b] = n += h.data_ptr<int64_t>()[b];
  if (n == 0) return 0.0;
  return 0.5 * (value_of_rank(cum, (n - 1) / 2) + value_of_rank(cum, n / 2));
}

double fraction_below(const at::Tensor& hist_B, double x) {
  at::Tensor h = hist_B.to(at::kDouble).contiguous();
  const int64_t B = h.numel();
  const double n = h.sum().item<double>();
  if (n == 0) return 0.0;
  const double pos = std::clamp(x, 0.0, 1.0) * double(B);
  const int64_t full = std::min<int64_t>(int64_t(pos), B);
  double below = h.narrow(0, 0, full).sum().item<double>();
  if (full < B) below += h[full].item<double>() * (pos - double(full));
  return below / n;
}

std::vector<double> skip_betas_from_stats(const hf::ModelConfig& c, const results::CalibrationStats& st,
                                          const std::string& stats_path) {
  if (!st.collected.count(results::stat::kGateRatios))
    throw InputError(stats_path, "lacks the \"gate_ratios\" statistics (router 2nd/1st probability ratios); collect "
                                 "them with: moelab calibrate MODEL --data FILE --collect gate_ratios");
  criteria::check_stats_match(st, c, stats_path);
  std::vector<double> beta(c.num_hidden_layers, 0.0);
  for (const auto& s : st.layers) beta[s.layer] = median_from_histogram(s.gate_ratio_hist_B);
  return beta;
}

void write_skipping_model(const std::string& model_dir, const std::vector<double>& beta, bool renormalize,
                          const std::string& out, bool overwrite) {
  const hf::ModelConfig c = hf::read_model_config((fs::path(model_dir) / "config.json").string());
  nlohmann::json raw = c.raw;
  raw["moelab_skip_beta"] = beta;
  raw["moelab_skip_renormalize"] = renormalize;
  AtomicDir dir(out, overwrite);
  // Everything but config.json as it is (weights, tokenizer, remote code of uneven models).
  for (const auto& entry : fs::directory_iterator(model_dir)) {
    if (entry.path().filename() == "config.json") continue;
    fs::copy(entry.path(), dir.path() / entry.path().filename(), fs::copy_options::recursive);
  }
  write_file_atomic(dir.path() / "config.json", raw.dump(2));
  dir.commit();
}

}  // namespace moelab::jobs
