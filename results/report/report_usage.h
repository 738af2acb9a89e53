// Expert usage per calibration set, for the report's "usage per calibration domain"
// plot: the tokens_E counts (stats_schema.md, group "usage") of every finished
// calibration job of a sweep, read through the statistics' reader (stats_file.h), only
// the usage group's datasets.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "results/report/report_data.h"

namespace moelab::results::report {

struct UsageSet {
  std::string model, calibration;           // model tag, calibration set name
  int64_t num_tokens = 0, experts_per_token = 0;
  std::vector<int64_t> layers;              // decoder-layer indices of the MoE layers
  std::vector<std::vector<int64_t>> tokens; // [layer][expert]: tokens routed to the expert
};

// InputError naming the file and dataset when a finished job's file is unreadable.
std::vector<UsageSet> read_usage(const std::string& results_dir, const SweepResults& r);

}  // namespace moelab::results::report
