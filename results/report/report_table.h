// The table model of `moelab report`: tables in the layouts of MC-Suite's tables
// (Jaiswal et al., "Finding Fantastic Experts in MoEs", arXiv 2504.05586):
//
//   criteria    Table 1's layout: one row per criterion (Min-X / Max-X) under one
//               procedure (one-shot when the sweep has it), column groups = drop ratios,
//               in each group the perplexity per domain and the task accuracies (and
//               their average); the unpruned model on top; best value per column marked
//               (lowest perplexity, highest accuracy; ties all marked).
//   procedures  Table 2's comparison: one-shot / iterative / Lottery rows per criterion.
//   recovery    none / k-shot / fine-tuned rows per criterion (the recovery study).
//   compare     two sweeps side by side (e.g. two calibration sets): per grid point,
//               each metric of sweep A, of sweep B and B - A.
//
// A cell is the mean over the sweep's seeds of one metric of the eval jobs at that grid
// point, with the sample standard deviation (n - 1) where there are several seeds.
// Tables are rendered by table_format.h.
#pragma once

#include <string>
#include <vector>

#include "results/report/report_data.h"

namespace moelab::results::report {

struct Cell {
  bool present = false;
  double mean = 0, std = 0;  // std: sample standard deviation over seeds (0 for one seed)
  int n = 0;                 // how many seeds
  bool best = false;
};

struct Column {
  std::string group;        // column group ("25%"), "" for none
  std::string label;        // "wiki PPL"
  bool lower_is_better = false;
  bool mark_best = false;   // rank rows in this column
  bool percent = false;     // value x100 when shown (accuracies)
  int decimals = 2;         // digits after the point when shown
};

struct Row {
  std::vector<std::string> labels;  // one per Table::row_headers
  bool baseline = false;            // the unpruned model: shown first, never "best"
  std::vector<Cell> cells;          // one per column
};

struct Table {
  std::string id;      // file stem: "criteria", "procedures-mixtral-c4", "kendall-c4-seed0"
  std::string title;   // one line
  std::string caption; // what the numbers are
  std::vector<std::string> row_headers;
  std::vector<Column> columns;
  std::vector<Row> rows;
  bool has_std() const;  // some cell is a mean over more than one seed
};

// Which eval jobs make one cell: criterion "none" selects the unpruned model (ratio,
// procedure and calibration ignored); a job tagged with no calibration set (weight
// criteria) matches every calibration set; an empty `calibration` matches every job.
struct GridSelect {
  std::string model, calibration, criterion, ratio, procedure, recovery;
};
// The metric over the matching finished evals (seeds ascending).
Cell grid_cell(const SweepResults& r, const GridSelect& s, const std::string& metric_key);

// One (model, calibration set) of a sweep, with the ratios (ascending), procedures
// (one-shot, iterative, lottery, then others) and recovery settings ("none" first) its
// evaluations cover. Tables are built per context.
struct Context {
  std::string model, calibration;
  std::string id_suffix, title_suffix;  // "" / "" when the sweep has one context
  std::vector<std::string> ratios, procedures, recoveries;
};
std::vector<Context> table_contexts(const SweepResults& r);

std::string procedure_label(const std::string& procedure);  // "lottery" -> "Lottery"
std::string recovery_label(const std::string& recovery);    // "kshot-3" -> "3-shot"

// Mean and sample standard deviation (n - 1; 0 for n = 1) of the values, summed in order.
Cell summarize(const std::vector<double>& values);

// criteria, procedures (when the sweep has >= 2 procedures) and recovery (>= 2 recovery
// settings) tables, per (model, calibration set) when the sweep has several. Best per
// column marked.
std::vector<Table> build_result_tables(const SweepResults& r);

// Sweep `b` next to sweep `a`, matched by (criterion, ratio, procedure, recovery), plus
// the model when either sweep has several and the calibration set when either has
// several. Rows present in only one sweep show "-" on the other side.
Table build_compare_table(const SweepResults& a, const SweepResults& b);

// Marks Cell::best in each column with Column::mark_best: the lowest (or highest) mean
// over non-baseline rows; equal means are all marked.
void mark_best(Table& t);

}  // namespace moelab::results::report
