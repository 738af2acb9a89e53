// moelab report: paper-style tables and plots from a sweep's results directory.
#include <cstdio>
#include <sstream>

#include "core/common/error.h"
#include "results/report/report_writer.h"
#include "runner/cli/commands.h"

namespace moelab::cli {
namespace {

struct ReportArgs {
  std::string results, out, compare, formats = "md,csv,tex,html", acc_metric = "acc";
  bool no_plots = false;
};

void run_report(const ReportArgs& a) {
  results::report::ReportOptions o;
  o.results_dir = a.results;
  o.out_dir = a.out;
  o.compare_dir = a.compare;
  o.acc_metric = a.acc_metric;
  o.plots = !a.no_plots;
  o.formats.clear();
  std::stringstream list(a.formats);
  for (std::string f; std::getline(list, f, ',');)
    if (!f.empty()) o.formats.insert(f);
  if (o.formats.empty()) throw InputError("--format", "give at least one of md, csv, tex, html");
  const auto s = results::report::write_report(o);
  std::printf("report: %zu tables, %zu plots from %zu finished evaluations -> %s\n", s.tables, s.plots, s.evals,
              s.out_dir.c_str());
  if (s.jobs_not_done) std::printf("note: %zu jobs of the sweep are not done (listed in the report)\n", s.jobs_not_done);
  if (!s.plots_note.empty()) std::printf("note: %s; the tables are written\n", s.plots_note.c_str());
}

}  // namespace

void add_report_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "report",
      "Tables and plots from a sweep's results directory, in the layouts of MC-Suite's tables (arXiv\n"
      "2504.05586): criteria (Min-/Max- rows) by drop ratio with perplexity and task accuracies, best per\n"
      "column marked; one-shot / iterative / Lottery; recovery (none / k-shot / fine-tuned); Kendall tau\n"
      "between criteria. Means and standard deviations over seeds. Markdown, CSV, LaTeX (booktabs), one\n"
      "HTML page with the plots embedded, and report.json. Plots (PNG, SVG) are drawn by results/report/plots.py\n"
      "with matplotlib (python3 on PATH); without it the tables are still written.\n\n"
      "Written to RESULTS_DIR/report/ (or --out) under a temporary name, then renamed; a report built\n"
      "from a copy of the results directory elsewhere is the same.\n\n"
      "Examples:\n"
      "  moelab sweep run configs/quickstart.yaml --results results/quickstart\n"
      "  moelab report results/quickstart\n"
      "  moelab report results/quickstart --out paper/tables --format tex,csv\n"
      "  moelab sweep run configs/newer_criteria.yaml --results results/newer\n"
      "  moelab report results/quickstart --compare results/newer --out reports/quickstart-vs-newer");
  auto a = std::make_shared<ReportArgs>();
  cmd->add_option("results", a->results, "a sweep's results directory")->required();
  cmd->add_option("--out", a->out, "report folder (default: RESULTS_DIR/report; replaced if it holds a report)");
  cmd->add_option("--compare", a->compare, "a second sweep's results directory, shown side by side");
  cmd->add_option("--format", a->formats, "comma-separated: md, csv, tex, html (default: all; report.json always)");
  cmd->add_option("--acc-metric", a->acc_metric, "accuracy of the task columns: acc, acc_norm or acc_bytes");
  cmd->add_flag("--no-plots", a->no_plots, "tables only; do not run the plots script");
  cmd->callback([a] { run_report(*a); });
}

}  // namespace moelab::cli
