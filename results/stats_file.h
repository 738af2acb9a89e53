// CalibrationStats <-> HDF5 file (schema: results/stats_schema.md). Written to a
// temporary name and renamed; read with checks that name the file and dataset.
#pragma once

#include <string>

#include "results/calibration_stats.h"

namespace moelab::results {

void write_stats(const CalibrationStats& stats, const std::string& path);
CalibrationStats read_stats(const std::string& path);

}  // namespace moelab::results
