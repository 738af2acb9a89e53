#include "runner/jobs/calibrate/skip_counter.h"

#include "core/common/log.h"

namespace moelab::jobs {

bool skipping_enabled(const hf::ModelConfig& c) {
  for (double b : c.skip_beta)
    if (b > 0) return true;
  return false;
}

std::string describe_skipping(const SkipCounter& counter) {
  const auto t = counter.total();
  std::string out = fmt::format("{} of {} expert rows skipped ({:.2f}%); per layer", t.skipped(), t.rows,
                                100 * t.skipped_fraction());
  bool first = true;
  for (const auto& [l, c] : counter.layers()) {
    out += fmt::format("{} {}: {:.2f}%", first ? "" : ",", l, 100 * c.skipped_fraction());
    first = false;
  }
  return out;
}

SkipCounter::SkipCounter(const models::MoeModel& m)
    : flops_per_row_(2 * 3 * m.config.hidden_size * m.config.moe_intermediate_size) {
  for (int64_t l = 0; l < m.config.num_hidden_layers; ++l)
    if (m.layers[l].moe) counts_[l] = {};
}

void SkipCounter::on_routing(int64_t layer, const at::Tensor&, const at::Tensor& topk_ids_NK, const at::Tensor&) {
  auto& c = counts_.at(layer);
  c.tokens += topk_ids_NK.size(0);
  c.rows += topk_ids_NK.numel();
}

void SkipCounter::on_combine(int64_t layer, const at::Tensor& expert_R, const at::Tensor&, const at::Tensor&,
                             const at::Tensor&) {
  counts_.at(layer).rows_run += expert_R.size(0);
}

void SkipCounter::all_reduce(cluster::Communicator& comm) {
  at::Tensor t = at::zeros({int64_t(counts_.size()), 3}, at::kLong);
  int64_t i = 0;
  for (const auto& [l, c] : counts_) {
    t[i][0] = c.tokens;
    t[i][1] = c.rows;
    t[i][2] = c.rows_run;
    ++i;
  }
  comm.all_reduce_sum(t);
  i = 0;
  for (auto& [l, c] : counts_) {
    c = {t[i][0].item<int64_t>(), t[i][1].item<int64_t>(), t[i][2].item<int64_t>()};
    ++i;
  }
}

SkipCounter::Counts SkipCounter::total() const {
  Counts sum;
  for (const auto& [l, c] : counts_) {
    sum.tokens += c.tokens;
    sum.rows += c.rows;
    sum.rows_run += c.rows_run;
  }
  return sum;
}

double SkipCounter::expert_flops_per_token() const {
  double f = 0;
  for (const auto& [l, c] : counts_)
    if (c.tokens > 0) f += double(flops_per_row_) * double(c.rows_run) / double(c.tokens);
  return f;
}

}  // namespace moelab::jobs
