// CalibrationStats <-> HDF5 file (schema: results/stats_schema.md). Written to a
// temporary name and renamed; read with checks that name the file and dataset.
#pragma once

#include <set>
#include <string>

#include "results/calibration_stats.h"

namespace moelab::results {

void write_stats(const CalibrationStats& stats, const std::string& path);
// The whole file, or only the datasets of the statistic groups in `only` (stat_groups.h
// names; e.g. {"usage"} for the report's usage counts, without reading gigabytes of
// per-channel sums). The file's attributes are always read and checked. InputError naming
// the file and dataset.
CalibrationStats read_stats(const std::string& path, const std::set<std::string>& only = {});

}  // namespace moelab::results
