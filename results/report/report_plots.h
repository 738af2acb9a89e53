// The report's plots: the data they need as one JSON file, drawn by results/report/plots.py
// (matplotlib) into PNG and SVG files.
//
//   ppl-*      perplexity vs drop ratio, one line per criterion (and procedure), the
//              unpruned model at ratio 0, error bars = std over seeds; log scale
//   scores-*   per-layer expert scores of each criterion as heatmaps (layers x experts,
//              min-max normalised within each layer: the order is what pruning uses)
//   usage-*    share of routed (token, expert) pairs per expert and layer, one panel per
//              calibration set (tokens_E of the calibration statistics)
//   kendall-*  the Kendall tau-b matrix between criteria (report_kendall.h)
//   compare-*  perplexity vs ratio of two sweeps on one axis (with --compare)
//
// python3 is looked up on PATH; the script is $MOELAB_PLOTS_SCRIPT or the source tree's
// results/report/plots.py. When python3 or matplotlib is missing the report is written
// without plots and says so.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "results/report/report_data.h"
#include "results/report/report_table.h"
#include "results/report/report_usage.h"

namespace moelab::results::report {

nlohmann::json plot_data(const SweepResults& r, const std::vector<UsageSet>& usage,
                         const std::vector<Table>& kendall, const SweepResults* other);

struct PlotFile {
  std::string stem, title, caption;  // <stem>.png and <stem>.svg in the plots folder
};

struct PlotOutcome {
  bool made = false;
  std::string note;              // why there are no plots (when !made)
  std::vector<PlotFile> plots;   // in page order
};

// Writes data to <dir>/plot_data.json and runs the script, which writes the images and
// <dir>/manifest.json. An error in the script (not a missing matplotlib) is an
// InputError quoting its last line of output.
PlotOutcome make_plots(const nlohmann::json& data, const std::filesystem::path& dir);

// Where the plots script is (for messages and tests).
std::string plots_script_path();

}  // namespace moelab::results::report
