// `moelab report`: everything the report writes, from a results directory to a report
// folder (written under a temporary name and renamed into place):
//
//   report.md  report.tex  report.html  report.json     all tables (and plots) together
//   tables/<id>.md  tables/<id>.csv  tables/<id>.tex     one file per table and format
//   plots/<stem>.png  plots/<stem>.svg  plots/plot_data.json  plots/manifest.json
//
// Tables: criteria, procedures, recovery (report_table.h), kendall-* (report_kendall.h),
// compare (with a second sweep). report.json holds every table's cells (mean, std, n,
// best) and is always written; the other formats as asked.
#pragma once

#include <set>
#include <string>

namespace moelab::results::report {

struct ReportOptions {
  std::string results_dir;
  std::string out_dir;       // "" = <results_dir>/report
  std::string compare_dir;   // a second sweep's results directory, or ""
  std::set<std::string> formats = {"md", "csv", "tex", "html"};
  std::string acc_metric = "acc";
  bool plots = true;
};

struct ReportSummary {
  std::string out_dir;
  size_t tables = 0, plots = 0, evals = 0, jobs_not_done = 0;
  std::string plots_note;  // why there are no plots, when there are none
};

// InputError naming the file and field for bad inputs; an existing output folder that
// is not a moelab report is refused (never deleted).
ReportSummary write_report(const ReportOptions& options);

}  // namespace moelab::results::report
