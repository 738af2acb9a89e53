#include "results/report/report_agreement.h"

#include <cmath>
#include <cstdio>
#include <set>
#include <stdexcept>

#include "results/criteria_agreement.h"
#include "results/report/report_kendall.h"

namespace moelab::results::report {

std::vector<Table> build_overlap_tables(const SweepResults& r) {
  std::set<double> ratios;
  for (const auto& j : r.jobs)
    if (j.tags.count("ratio")) ratios.insert(std::stod(j.tags.at("ratio")));
  std::vector<Table> out;
  for (const auto& s : r.scores) {
    std::vector<ChoiceScores> choices;
    for (const auto& label : r.criteria) {
      const bool max = label.rfind("Max-", 0) == 0;
      const std::string bare = (max || label.rfind("Min-", 0) == 0) ? label.substr(4) : label;
      auto it = s.criteria.find(bare);
      if (it == s.criteria.end()) continue;
      choices.push_back({label, !max, it->second});
    }
    if (choices.size() < 2) continue;
    for (double ratio : ratios) {
      if (!(ratio > 0)) continue;
      std::vector<AgreementRow> rows;
      try {
        rows = criteria_agreement(choices, ratio);
      } catch (const std::invalid_argument&) {
        continue;  // criteria scored on different layers: nothing comparable
      }
      char tag[32];
      std::snprintf(tag, sizeof tag, "%g", ratio);
      Table t;
      t.id = "overlap-" + score_set_stem(r, s) + "-r" + tag;
      t.title = "Experts dropped by both criteria at ratio " + std::string(tag) + " (scores of " +
                score_set_name(r, s) + ")";
      t.caption = "Top-r overlap: of the round(ratio x E) experts each criterion drops per MoE layer (with its "
                  "direction, as moelab prune chooses them), the share both drop, over all MoE layers (1: the same "
                  "experts, 0: none in common). moelab score --agreement gives it per layer.";
      t.row_headers = {"Criterion"};
      for (const auto& c : choices) t.columns.push_back({"", c.label, false, false, false, 2});
      for (const auto& a : choices) {
        Row row;
        row.labels = {a.label};
        for (const auto& b : choices) {
          Cell c;
          c.present = true;
          c.n = 1;
          c.mean = 1.0;
          for (const auto& x : rows)
            if (x.layer < 0 && ((x.a == a.label && x.b == b.label) || (x.a == b.label && x.b == a.label)))
              c.mean = x.overlap;
          c.present = !std::isnan(c.mean);
          row.cells.push_back(c);
        }
        t.rows.push_back(std::move(row));
      }
      out.push_back(std::move(t));
    }
  }
  return out;
}

}  // namespace moelab::results::report
