#include "results/report/report_kendall.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace moelab::results::report {
namespace {

std::string file_safe(const std::string& s) {
  std::string out;
  for (char c : s) out += std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ? c : '_';
  return out;
}

// "Min-EAN" -> "EAN".
std::string bare(const std::string& label) {
  if (label.rfind("Min-", 0) == 0 || label.rfind("Max-", 0) == 0) return label.substr(4);
  return label;
}

}  // namespace

double kendall_tau_b(const std::vector<double>& x, const std::vector<double>& y) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (x.size() != y.size() || x.size() < 2) return nan;
  for (size_t i = 0; i < x.size(); ++i)
    if (std::isnan(x[i]) || std::isnan(y[i])) return nan;
  // O(n^2): n is the number of experts of one layer (8..256).
  int64_t concordant = 0, discordant = 0, ties_x = 0, ties_y = 0, n0 = 0;
  for (size_t i = 0; i < x.size(); ++i)
    for (size_t j = i + 1; j < x.size(); ++j) {
      ++n0;
      const double dx = x[i] - x[j], dy = y[i] - y[j];
      if (dx == 0) ++ties_x;
      if (dy == 0) ++ties_y;
      if (dx == 0 || dy == 0) continue;
      if ((dx > 0) == (dy > 0)) {
        ++concordant;
      } else {
        ++discordant;
      }
    }
  const double denom = std::sqrt(double(n0 - ties_x) * double(n0 - ties_y));
  if (denom == 0) return nan;
  return double(concordant - discordant) / denom;
}

std::vector<std::string> ordered_criteria(const SweepResults& r, const ScoreSet& s) {
  std::vector<std::string> out;
  for (const auto& label : r.criteria) {
    const std::string name = bare(label);
    for (const auto& [c, layers] : s.criteria)
      if (c == name && std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
  }
  for (const auto& [c, layers] : s.criteria)  // std::map: alphabetical
    if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
  return out;
}

std::string score_set_name(const SweepResults& r, const ScoreSet& s) {
  std::string name = s.calibration.empty() ? "weights only" : s.calibration;
  if (!s.seed.empty()) name += ", seed " + s.seed;
  if (r.models.size() > 1) name = r.model_name(s.model) + ", " + name;
  return name;
}

std::string score_set_stem(const SweepResults& r, const ScoreSet& s) {
  std::string stem = s.calibration.empty() ? "weights" : file_safe(s.calibration);
  if (!s.seed.empty()) stem += "-seed" + file_safe(s.seed);
  if (r.models.size() > 1) stem = file_safe(r.model_name(s.model)) + "-" + stem;
  return stem;
}

std::vector<Table> build_kendall_tables(const SweepResults& r) {
  std::vector<Table> out;
  for (const auto& s : r.scores) {
    const auto crits = ordered_criteria(r, s);
    if (crits.size() < 2) continue;
    Table t;
    t.id = "kendall-" + score_set_stem(r, s);
    t.title = "Kendall tau-b between criteria (scores of " + score_set_name(r, s) + ")";
    t.caption = "Rank agreement of two criteria's expert scores: Kendall's tau-b within each MoE layer, mean "
                "over the layers where both are defined (1: same order, -1: reversed). Scores as stored; a Max- "
                "criterion drops the highest scores, so its agreement with a Min- criterion is minus this value.";
    t.row_headers = {"Criterion"};
    for (const auto& c : crits) t.columns.push_back({"", c, false, false, false, 3});
    for (const auto& a : crits) {
      Row row;
      row.labels = {a};
      for (const auto& b : crits) {
        std::vector<double> taus;
        const auto& la = s.criteria.at(a);
        const auto& lb = s.criteria.at(b);
        for (const auto& [layer, xa] : la) {
          auto it = lb.find(layer);
          if (it == lb.end()) continue;
          const double tau = kendall_tau_b(xa, it->second);
          if (!std::isnan(tau)) taus.push_back(tau);
        }
        Cell c = summarize(taus);
        c.std = 0;  // a mean over layers, not over seeds
        c.n = c.present ? 1 : 0;
        row.cells.push_back(c);
      }
      t.rows.push_back(std::move(row));
    }
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace moelab::results::report
