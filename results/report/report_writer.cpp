#include "results/report/report_writer.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/common/atomic_output.h"
#include "core/common/error.h"
#include "results/report/report_agreement.h"
#include "results/report/report_claims.h"
#include "results/report/report_data.h"
#include "results/report/report_html.h"
#include "results/report/report_kendall.h"
#include "results/report/report_plots.h"
#include "results/report/report_super_experts.h"
#include "results/report/report_table.h"
#include "results/report/report_usage.h"
#include "results/report/table_format.h"

namespace moelab::results::report {
namespace fs = std::filesystem;

namespace {

bool inside(const fs::path& child, const fs::path& parent) {
  auto c = fs::weakly_canonical(child), p = fs::weakly_canonical(parent);
  auto [pe, ce] = std::mismatch(p.begin(), p.end(), c.begin(), c.end());
  return pe == p.end();
}

std::string plural(size_t n, const std::string& word) { return std::to_string(n) + " " + word + (n == 1 ? "" : "s"); }

}  // namespace

ReportSummary write_report(const ReportOptions& o) {
  for (const auto& f : o.formats)
    if (f != "md" && f != "csv" && f != "tex" && f != "html")
      throw InputError("--format", "\"" + f + "\" is not md, csv, tex or html");
  if (o.acc_metric != "acc" && o.acc_metric != "acc_norm" && o.acc_metric != "acc_bytes")
    throw InputError("--acc-metric", "\"" + o.acc_metric + "\" is not acc, acc_norm or acc_bytes");
  const SweepResults r = load_sweep_results(o.results_dir, o.acc_metric);
  std::optional<SweepResults> other;
  if (!o.compare_dir.empty()) other = load_sweep_results(o.compare_dir, o.acc_metric);

  const fs::path out = o.out_dir.empty() ? fs::path(o.results_dir) / "report" : fs::path(o.out_dir);
  if (inside(o.results_dir, out))
    throw InputError(out.string(), "the report folder cannot hold the results directory");
  if (fs::exists(out) && !fs::is_empty(out) && !fs::exists(out / "report.json"))
    throw InputError(out.string(), "exists and is not a moelab report (remove it or give another --out)");

  std::vector<Table> tables;
  if (!r.claims.empty()) tables.push_back(build_claims_table(r));  // first: what the sweep was run to find out
  const std::vector<Table> results = build_result_tables(r);
  tables.insert(tables.end(), results.begin(), results.end());
  const std::vector<Table> kendall = build_kendall_tables(r);
  tables.insert(tables.end(), kendall.begin(), kendall.end());
  const std::vector<Table> overlap = build_overlap_tables(r);
  tables.insert(tables.end(), overlap.begin(), overlap.end());
  if (other) tables.push_back(build_compare_table(r, *other));

  Page page;
  page.title = "moelab report: sweep " + r.name;
  size_t done = 0;
  for (const auto& j : r.jobs) done += j.state == "done";
  page.summary.push_back(plural(r.jobs.size(), "job") + ", " + std::to_string(done) + " done; " +
                         plural(r.evals.size(), "finished evaluation") + ".");
  if (other) page.summary.push_back("Compared with sweep " + other->name + " (" + plural(other->evals.size(), "finished evaluation") + ").");
  for (const auto& n : r.not_done) page.notes.push_back("not in the tables: " + n);
  for (const auto& n : super_expert_notes(o.results_dir, r)) page.notes.push_back(n);
  page.tables = tables;

  AtomicDir tmp(out, /*overwrite=*/true);
  const fs::path dir = tmp.path();
  if (o.plots) {
    const auto usage = read_usage(o.results_dir, r);
    page.plots = make_plots(plot_data(r, usage, kendall, other ? &*other : nullptr), dir / "plots");
  } else {
    page.plots.note = "plots skipped (--no-plots)";
  }
  if (!page.plots.made) page.notes.push_back(page.plots.note);

  fs::create_directories(dir / "tables");
  nlohmann::json all = nlohmann::json::array();
  std::string md = "# " + page.title + "\n\n";
  for (const auto& line : page.summary) md += line + "\n\n";
  for (const auto& n : page.notes) md += "- " + n + "\n";
  if (!page.notes.empty()) md += "\n";
  for (const auto& t : tables) {
    all.push_back(to_json(t));
    if (o.formats.count("md")) write_file_atomic(dir / "tables" / (t.id + ".md"), to_markdown(t));
    if (o.formats.count("csv")) write_file_atomic(dir / "tables" / (t.id + ".csv"), to_csv(t));
    if (o.formats.count("tex")) write_file_atomic(dir / "tables" / (t.id + ".tex"), to_latex(t));
    md += to_markdown(t) + "\n";
  }
  if (!page.plots.plots.empty()) {
    md += "## Plots\n\n";
    for (const auto& p : page.plots.plots)
      md += "![" + p.title + "](plots/" + p.stem + ".png)\n\n*" + p.title + ".* " + p.caption + "\n\n";
  }
  write_file_atomic(dir / "report.json", nlohmann::json{{"sweep", r.name}, {"tables", all}}.dump(1) + "\n");
  if (o.formats.count("md")) write_file_atomic(dir / "report.md", md);
  if (o.formats.count("tex")) write_file_atomic(dir / "report.tex", latex_document(page.title, tables));
  if (o.formats.count("html")) write_file_atomic(dir / "report.html", report_html(page, dir / "plots"));
  tmp.commit();

  ReportSummary s;
  s.out_dir = out.string();
  s.tables = tables.size();
  s.plots = page.plots.plots.size();
  s.evals = r.evals.size();
  s.jobs_not_done = r.not_done.size();
  s.plots_note = page.plots.made ? "" : page.plots.note;
  return s;
}

}  // namespace moelab::results::report
