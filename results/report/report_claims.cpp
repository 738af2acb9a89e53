#include "results/report/report_claims.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>

namespace moelab::results::report {
namespace {

using Point = std::map<std::string, std::string>;  // claim_grid_keys() -> tag value

std::string tag(const Job& j, const std::string& k) {
  auto it = j.tags.find(k);
  return it == j.tags.end() ? "" : it->second;
}

double num(const std::string& s) { return std::strtod(s.c_str(), nullptr); }

std::string basename(const std::string& path) {
  std::string s = path;
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  const size_t slash = s.find_last_of('/');
  return slash == std::string::npos ? s : s.substr(slash + 1);
}

// Whether a point's tag satisfies a claim's value for key k (claims.h: ratio as a number,
// recovery by label or kind, model by path or folder name; a point without a
// calibration set, a weight criterion's, serves every set).
bool satisfies(const Point& p, const std::string& k, const std::string& v) {
  const std::string& t = p.at(k);
  if (k == "ratio") return std::abs(num(t) - num(v)) < 1e-9;
  if (k == "recovery") return t == v || t.rfind(v + "-", 0) == 0;
  if (k == "model") return t == v || basename(t) == v;
  if (k == "calibration") return t.empty() || t == v;
  return t == v;
}

// Whether two points agree on key k (calibration: "" agrees with every set).
bool same(const Point& a, const Point& b, const std::string& k) {
  if (k == "ratio") return std::abs(num(a.at(k)) - num(b.at(k))) < 1e-9;
  if (k == "calibration") return a.at(k).empty() || b.at(k).empty() || a.at(k) == b.at(k);
  return a.at(k) == b.at(k);
}

std::vector<Point> pruned_points(const SweepResults& r) {
  std::vector<Point> out;
  for (const auto& e : r.evals) {
    const Job& j = r.jobs[e.job];
    if (tag(j, "criterion") == "none") continue;
    Point p;
    for (const auto& k : claim_grid_keys()) p[k] = tag(j, k);
    const bool seen = std::any_of(out.begin(), out.end(), [&](const Point& q) {
      for (const auto& k : claim_grid_keys())
        if (k == "calibration" ? q.at(k) != p.at(k) : !same(p, q, k)) return false;
      return true;
    });
    if (!seen) out.push_back(p);
  }
  return out;
}

std::optional<double> value_at(const SweepResults& r, const Point& p, const std::string& metric) {
  const Cell c = grid_cell(r, {p.at("model"), p.at("calibration"), p.at("criterion"), p.at("ratio"), p.at("procedure"),
                               p.at("recovery")},
                           metric);
  if (!c.present) return std::nullopt;
  return c.mean;
}

std::string shown(double v, const Metric& m) {
  char buf[64];
  std::snprintf(buf, sizeof buf, m.percent ? "%.1f" : "%.2f", m.percent ? v * 100 : v);
  return buf;
}

std::string shown_key(const std::string& k, const std::string& v) {
  if (k == "ratio") return ratio_label(v);
  if (k == "model") return basename(v);
  if (k == "procedure") return procedure_label(v);
  if (k == "recovery") return recovery_label(v);
  return v;
}

std::string describe(const std::map<std::string, std::string>& m) {
  std::string s;
  for (const auto& k : claim_grid_keys())
    if (auto it = m.find(k); it != m.end()) s += (s.empty() ? "" : ", ") + k + " " + shown_key(k, it->second);
  return s;
}

// "25%, one-shot": the keys that tell the claim's matched points apart.
std::string point_label(const Point& p, const std::vector<Point>& matched, const results::ClaimSpec& c) {
  std::string s;
  for (const auto& k : claim_grid_keys()) {
    if (c.select.count(k)) continue;
    const bool varies = std::any_of(matched.begin(), matched.end(), [&](const Point& q) { return q.at(k) != p.at(k); });
    if (varies && !p.at(k).empty()) s += (s.empty() ? "" : ", ") + shown_key(k, p.at(k));
  }
  return s;
}

bool better(double a, double b, const Metric& m) { return m.lower_is_better ? a < b : a > b; }

struct Outcome {
  bool measured = false, holds = false;
  std::string text;
};

Outcome check_rank(const SweepResults& r, const results::ClaimSpec& c, const Metric& m, const Point& p,
                   const std::vector<Point>& all, double v) {
  std::vector<std::pair<double, std::string>> group;  // value, the `among` value
  for (const auto& q : all) {
    bool ok = true;
    for (const auto& k : claim_grid_keys()) ok = ok && (k == c.among || same(p, q, k));
    if (!ok) continue;
    if (auto w = value_at(r, q, c.metric)) group.emplace_back(*w, q.at(c.among));
  }
  size_t rank = 1;
  const std::pair<double, std::string>* best = nullptr;
  for (const auto& g : group) {
    if (better(g.first, v, m)) ++rank;
    if (!best || better(g.first, best->first, m)) best = &g;
  }
  Outcome o;
  o.measured = group.size() >= 2;
  o.holds = o.measured && rank <= size_t(c.within);
  o.text = shown(v, m) + " (rank " + std::to_string(rank) + " of " + std::to_string(group.size());
  if (best && rank > 1) o.text += "; best " + shown_key(c.among, best->second) + " " + shown(best->first, m);
  o.text += ")";
  return o;
}

Outcome check_better(const SweepResults& r, const results::ClaimSpec& c, const Metric& m, const Point& p,
                     const std::vector<Point>& all, double v) {
  Outcome o;
  for (const auto& q : all) {
    bool ok = true;
    for (const auto& k : claim_grid_keys())
      ok = ok && (c.versus.count(k) ? satisfies(q, k, c.versus.at(k)) : same(p, q, k));
    if (!ok) continue;
    if (auto w = value_at(r, q, c.metric)) {
      o.measured = true;
      o.holds = better(v, *w, m);
      o.text = shown(v, m) + " vs " + shown(*w, m);
      return o;
    }
  }
  o.text = shown(v, m) + " vs - (" + describe(c.versus) + " not evaluated)";
  return o;
}

Outcome check_retains(const SweepResults& r, const results::ClaimSpec& c, const Metric& m, const Point& p, double v) {
  // The unpruned model under the same recovery (a 3-shot point against the 3-shot
  // unpruned model), else as evaluated plainly.
  Cell base = grid_cell(r, {p.at("model"), "", "none", "0", "none", p.at("recovery")}, c.metric);
  if (!base.present) base = grid_cell(r, {p.at("model"), "", "none", "0", "none", "none"}, c.metric);
  Outcome o;
  if (!base.present || base.mean == 0 || v == 0) {
    o.text = shown(v, m) + " (no unpruned model's value)";
    return o;
  }
  const double frac = m.lower_is_better ? base.mean / v : v / base.mean;
  char pct[32];
  std::snprintf(pct, sizeof pct, "%.1f%%", frac * 100);
  o.measured = true;
  o.holds = frac >= c.at_least;
  o.text = shown(v, m) + " = " + pct + " of the unpruned " + shown(base.mean, m);
  return o;
}

std::string setting(const results::ClaimSpec& c, const Metric* m) {
  std::string s = m ? m->label + (m->lower_is_better ? " (lower is better)" : "") : c.metric;
  s += "; " + describe(c.select);
  if (c.kind == ClaimKind::kRank) {
    static const std::map<std::string, std::string> plural = {
        {"model", "models"},         {"calibration", "calibration sets"}, {"criterion", "criteria"},
        {"ratio", "ratios"},         {"procedure", "procedures"},         {"recovery", "recovery settings"}};
    s += (c.within == 1 ? " is the best of the " : " is among the " + std::to_string(c.within) + " best of the ") +
         plural.at(c.among);
  }
  if (c.kind == ClaimKind::kBetter) s += " beats " + describe(c.versus);
  if (c.kind == ClaimKind::kRetains) {
    char pct[32];
    std::snprintf(pct, sizeof pct, "%g%%", c.at_least * 100);
    s += " keeps >= " + std::string(pct) + " of the unpruned model";
  }
  return s;
}

}  // namespace

Table build_claims_table(const SweepResults& r) {
  Table t;
  t.id = "claims";
  t.title = "The papers' claims";
  t.caption = "Each claim checked at every setting of this sweep that it names, from the finished evaluations "
              "(means over seeds). Verdicts are computed, not written by hand.";
  t.row_headers = {"paper", "claim", "setting", "measured", "verdict"};
  const std::vector<Point> all = pruned_points(r);
  for (const auto& c : r.claims) {
    Row row;
    if (c.kind == ClaimKind::kNotMeasured) {
      row.labels = {c.paper, c.claim, "-", "-", "not measured: " + c.reason};
      t.rows.push_back(row);
      continue;
    }
    const Metric* m = nullptr;
    for (const auto& x : r.metrics)
      if (x.key == c.metric) m = &x;
    std::vector<Point> matched;
    for (const auto& p : all)
      if (std::all_of(c.select.begin(), c.select.end(), [&](const auto& kv) { return satisfies(p, kv.first, kv.second); }))
        matched.push_back(p);
    std::vector<std::string> parts;
    size_t measured = 0, holds = 0;
    if (m)
      for (const auto& p : matched) {
        const auto v = value_at(r, p, c.metric);
        if (!v) continue;
        const Outcome o = c.kind == ClaimKind::kRank     ? check_rank(r, c, *m, p, all, *v)
                          : c.kind == ClaimKind::kBetter ? check_better(r, c, *m, p, all, *v)
                                                         : check_retains(r, c, *m, p, *v);
        const std::string label = point_label(p, matched, c);
        parts.push_back((label.empty() ? "" : label + ": ") + o.text + (o.measured ? (o.holds ? " yes" : " no") : ""));
        measured += o.measured;
        holds += o.measured && o.holds;
      }
    std::string measured_text;
    for (const auto& s : parts) measured_text += (measured_text.empty() ? "" : "; ") + s;
    std::string verdict;
    if (measured == 0) {
      verdict = !m ? "not measured: no evaluation of this sweep wrote " + c.metric : "not measured: no finished evaluation at these settings";
    } else if (holds == measured) {
      verdict = "holds";
    } else if (holds == 0) {
      verdict = "does not hold";
    } else {
      verdict = "holds at " + std::to_string(holds) + " of " + std::to_string(measured) + " settings";
    }
    row.labels = {c.paper, c.claim, setting(c, m), measured_text.empty() ? "-" : measured_text, verdict};
    t.rows.push_back(row);
  }
  return t;
}

}  // namespace moelab::results::report
