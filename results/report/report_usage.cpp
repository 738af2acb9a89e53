#include "results/report/report_usage.h"

#include <cstdio>
#include <filesystem>
#include <sstream>

#include "core/common/error.h"
#include "results/stat_groups.h"
#include "results/stats_file.h"

namespace moelab::results::report {
namespace {

// Only the usage group's datasets, through the statistics' one reader (stats_file.h).
UsageSet read_one(const std::string& path) {
  const CalibrationStats st = read_stats(path, {stat::kUsage});
  UsageSet u;
  u.num_tokens = st.num_tokens;
  u.experts_per_token = st.experts_per_token;
  for (const auto& ls : st.layers) {
    if (!ls.tokens_E.defined()) {
      char name[48];
      std::snprintf(name, sizeof name, "layer_%03lld/tokens_E", static_cast<long long>(ls.layer));
      throw InputError(path, std::string("dataset \"") + name + "\" is missing (the usage group was not collected)");
    }
    const at::Tensor t = ls.tokens_E.to(at::kLong).contiguous();
    u.layers.push_back(ls.layer);
    u.tokens.emplace_back(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
  }
  return u;
}

}  // namespace

std::vector<UsageSet> read_usage(const std::string& results_dir, const SweepResults& r) {
  std::vector<UsageSet> out;
  for (const auto& job : r.jobs) {
    if (job.kind != JobKind::kCalibrate || job.state != "done") continue;
    const std::string path = (std::filesystem::path(results_dir) / job.output).string();
    if (!std::filesystem::exists(path)) throw InputError(path, "missing, though the job's record says done");
    UsageSet u = read_one(path);
    u.model = job.args.size() > 1 ? job.args[1] : "";
    u.calibration = r.calibration_of(job);
    out.push_back(std::move(u));
  }
  return out;
}

}  // namespace moelab::results::report
