#include "results/criteria_agreement.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <set>
#include <stdexcept>

#include "results/report/report_kendall.h"

namespace moelab::results {
namespace {

const double kNan = std::numeric_limits<double>::quiet_NaN();

// Shortest text that reads back as the same double.
std::string num(double x) {
  if (std::isnan(x)) return "nan";
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, x);
  return std::string(buf, r.ptr);
}

// Scores in drop order: Min- as stored, Max- negated.
std::vector<double> drop_keys(const ChoiceScores& c, int64_t layer) {
  std::vector<double> s = c.layers.at(layer);
  if (!c.min_direction)
    for (double& x : s) x = -x;
  return s;
}

}  // namespace

std::vector<int64_t> dropped_experts(const ChoiceScores& c, int64_t layer, double ratio) {
  const std::vector<double> key = drop_keys(c, layer);
  std::vector<int64_t> order(key.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return key[a] < key[b]; });
  order.resize(size_t(std::llround(ratio * double(key.size()))));
  std::sort(order.begin(), order.end());
  return order;
}

std::vector<AgreementRow> criteria_agreement(const std::vector<ChoiceScores>& choices, double ratio) {
  if (choices.empty()) return {};
  for (const auto& c : choices) {
    bool same = c.layers.size() == choices[0].layers.size();
    for (const auto& [l, s] : choices[0].layers) same = same && c.layers.count(l) && c.layers.at(l).size() == s.size();
    if (!same) throw std::invalid_argument(c.label + " scores other layers or expert counts than " + choices[0].label);
  }
  std::vector<AgreementRow> rows;
  for (size_t i = 0; i < choices.size(); ++i)
    for (size_t j = i + 1; j < choices.size(); ++j) {
      const auto &A = choices[i], &B = choices[j];
      double tau_sum = 0;
      int64_t tau_n = 0, common_all = 0, dropped_all = 0;
      for (const auto& [l, s] : A.layers) {
        AgreementRow r{A.label, B.label, l};
        r.kendall_tau = report::kendall_tau_b(drop_keys(A, l), drop_keys(B, l));
        const auto da = dropped_experts(A, l, ratio), db = dropped_experts(B, l, ratio);
        std::vector<int64_t> both;
        std::set_intersection(da.begin(), da.end(), db.begin(), db.end(), std::back_inserter(both));
        r.dropped = int64_t(da.size());
        r.overlap = da.empty() ? kNan : double(both.size()) / double(da.size());
        if (!std::isnan(r.kendall_tau)) {
          tau_sum += r.kendall_tau;
          ++tau_n;
        }
        common_all += int64_t(both.size());
        dropped_all += r.dropped;
        rows.push_back(r);
      }
      AgreementRow all{A.label, B.label, -1};
      all.kendall_tau = tau_n ? tau_sum / double(tau_n) : kNan;
      all.overlap = dropped_all ? double(common_all) / double(dropped_all) : kNan;
      all.dropped = dropped_all;
      rows.push_back(all);
    }
  return rows;
}

std::string agreement_csv(const std::vector<AgreementRow>& rows) {
  std::string out = "layer,criterion_a,criterion_b,kendall_tau,top_r_overlap,dropped\n";
  for (const auto& r : rows)
    out += (r.layer < 0 ? std::string("all") : std::to_string(r.layer)) + "," + r.a + "," + r.b + "," +
           num(r.kendall_tau) + "," + num(r.overlap) + "," + std::to_string(r.dropped) + "\n";
  return out;
}

std::string agreement_text(const std::vector<ChoiceScores>& choices, const std::vector<AgreementRow>& rows,
                           double ratio) {
  std::map<std::pair<std::string, std::string>, const AgreementRow*> overall;
  for (const auto& r : rows)
    if (r.layer < 0) overall[{r.a, r.b}] = overall[{r.b, r.a}] = &r;
  size_t w = 8;
  for (const auto& c : choices) w = std::max(w, c.label.size() + 1);
  auto matrix = [&](const std::string& title, bool tau) {
    std::string out = title + "\n" + std::string(w, ' ');
    for (const auto& c : choices) out += std::string(w - c.label.size(), ' ') + c.label;
    out += "\n";
    for (const auto& a : choices) {
      out += a.label + std::string(w - a.label.size(), ' ');
      for (const auto& b : choices) {
        std::string cell = "1";
        if (a.label != b.label) {
          const AgreementRow* r = overall.at({a.label, b.label});
          char buf[32];
          std::snprintf(buf, sizeof buf, "%.3f", tau ? r->kendall_tau : r->overlap);
          cell = buf;
        }
        out += std::string(w - std::min(w, cell.size()), ' ') + cell;
      }
      out += "\n";
    }
    return out;
  };
  char head[96];
  std::snprintf(head, sizeof head, "top-r overlap of the experts dropped at ratio %g (all MoE layers)", ratio);
  return matrix("Kendall tau-b of the drop orders (mean over MoE layers)", true) + "\n" + matrix(head, false);
}

}  // namespace moelab::results
