// The report as one HTML page: a summary, every table, and every plot embedded as a
// PNG data URI (the SVG beside it in plots/, linked), so that the file stands alone.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "results/report/report_plots.h"
#include "results/report/report_table.h"

namespace moelab::results::report {

struct Page {
  std::string title;                   // "moelab report: sweep <name>"
  std::vector<std::string> summary;    // lines shown on top
  std::vector<std::string> notes;      // jobs not done, plots skipped, ...
  std::vector<Table> tables;
  PlotOutcome plots;
};

// `plots_dir`: where the plot images are (read to embed them); links in the page are
// relative ("plots/<stem>.svg").
std::string report_html(const Page& page, const std::filesystem::path& plots_dir);

std::string base64(const std::string& bytes);

}  // namespace moelab::results::report
