#include "results/report/report_table.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <tuple>

#include "core/common/error.h"

namespace moelab::results::report {
namespace {

const std::vector<std::string> kProcedureOrder = {"one-shot", "searched", "iterative", "lottery"};

double ratio_value(const std::string& tag) { return std::strtod(tag.c_str(), nullptr); }

std::string tag(const Job& j, const std::string& key) {
  auto it = j.tags.find(key);
  return it == j.tags.end() ? "" : it->second;
}

using Select = GridSelect;

bool matches(const Job& j, const Select& s) {
  if (tag(j, "model") != s.model || tag(j, "criterion") != s.criterion || tag(j, "recovery") != s.recovery) return false;
  if (s.criterion == "none") return true;  // the unpruned model: no ratio, procedure or calibration
  if (tag(j, "procedure") != s.procedure) return false;
  if (std::abs(ratio_value(tag(j, "ratio")) - ratio_value(s.ratio)) > 1e-9) return false;
  const std::string cal = tag(j, "calibration");
  return s.calibration.empty() || cal.empty() || cal == s.calibration;
}

uint64_t seed_of(const Job& j) { return std::strtoull(tag(j, "seed").c_str(), nullptr, 10); }

// The matching finished evals, ordered by seed (then plan order).
std::vector<const EvalResult*> select(const SweepResults& r, const Select& s) {
  std::vector<const EvalResult*> out;
  for (const auto& e : r.evals)
    if (matches(r.jobs[e.job], s)) out.push_back(&e);
  std::stable_sort(out.begin(), out.end(), [&](const EvalResult* a, const EvalResult* b) {
    return seed_of(r.jobs[a->job]) < seed_of(r.jobs[b->job]);
  });
  return out;
}

Cell cell_of(const std::vector<const EvalResult*>& evals, const std::string& metric) {
  std::vector<double> v;
  for (const auto* e : evals)
    if (auto it = e->values.find(metric); it != e->values.end()) v.push_back(it->second);
  return summarize(v);
}

std::string file_safe(const std::string& s) {
  std::string out;
  for (char c : s) out += std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ? c : '_';
  return out;
}

}  // namespace

std::string procedure_label(const std::string& p) { return p == "lottery" ? "Lottery" : p; }

std::string recovery_label(const std::string& r) {
  if (r.rfind("kshot-", 0) == 0) return r.substr(6) + "-shot";
  return r;
}

Cell grid_cell(const SweepResults& r, const GridSelect& s, const std::string& metric_key) {
  return cell_of(select(r, s), metric_key);
}

std::vector<Context> table_contexts(const SweepResults& r) {
  std::vector<std::string> cals = r.calibrations;
  if (cals.empty()) cals.push_back("");
  std::vector<Context> out;
  for (const auto& m : r.models)
    for (const auto& c : cals) {
      Context ctx;
      ctx.model = m;
      ctx.calibration = c;
      if (r.models.size() > 1) ctx.id_suffix += "-" + file_safe(r.model_name(m));
      if (cals.size() > 1) ctx.id_suffix += "-" + file_safe(c);
      ctx.title_suffix = ": " + r.model_name(m) + (c.empty() ? "" : ", calibration " + c);
      std::vector<std::string> procs;
      for (const auto& e : r.evals) {
        const Job& j = r.jobs[e.job];
        if (tag(j, "model") != m) continue;
        const std::string rec = tag(j, "recovery");
        if (std::find(ctx.recoveries.begin(), ctx.recoveries.end(), rec) == ctx.recoveries.end())
          ctx.recoveries.push_back(rec);
        if (tag(j, "criterion") == "none") continue;
        const std::string cal = tag(j, "calibration");
        if (!c.empty() && !cal.empty() && cal != c) continue;
        const std::string ratio = tag(j, "ratio");
        if (std::none_of(ctx.ratios.begin(), ctx.ratios.end(),
                         [&](const std::string& x) { return std::abs(ratio_value(x) - ratio_value(ratio)) < 1e-9; }))
          ctx.ratios.push_back(ratio);
        const std::string p = tag(j, "procedure");
        if (std::find(procs.begin(), procs.end(), p) == procs.end()) procs.push_back(p);
      }
      std::stable_sort(ctx.ratios.begin(), ctx.ratios.end(),
                       [](const std::string& a, const std::string& b) { return ratio_value(a) < ratio_value(b); });
      for (const auto& p : kProcedureOrder)
        if (std::find(procs.begin(), procs.end(), p) != procs.end()) ctx.procedures.push_back(p);
      for (const auto& p : procs)
        if (std::find(kProcedureOrder.begin(), kProcedureOrder.end(), p) == kProcedureOrder.end())
          ctx.procedures.push_back(p);
      std::stable_partition(ctx.recoveries.begin(), ctx.recoveries.end(), [](const std::string& x) { return x == "none"; });
      out.push_back(std::move(ctx));
    }
  return out;
}

namespace {

std::vector<Column> ratio_columns(const SweepResults& r, const Context& ctx) {
  std::vector<Column> cols;
  for (const auto& ratio : ctx.ratios)
    for (const auto& m : r.metrics)
      cols.push_back({ratio_label(ratio), m.label, m.lower_is_better, true, m.percent, 2});
  return cols;
}

// One row: for each ratio of the context, each metric of the sweep.
Row grid_row(const SweepResults& r, const Context& ctx, std::vector<std::string> labels, Select s) {
  Row row;
  row.labels = std::move(labels);
  row.baseline = s.criterion == "none";
  bool any = false;
  for (const auto& ratio : ctx.ratios) {
    s.ratio = ratio;
    const auto evals = select(r, s);
    any |= !evals.empty();
    for (const auto& m : r.metrics) row.cells.push_back(cell_of(evals, m.key));
  }
  if (!any) row.cells.clear();  // nothing at this grid point: the caller drops the row
  return row;
}

const char* kCaption =
    "Mean over seeds (+- sample standard deviation where a cell has several). PPL: perplexity, lower is "
    "better; task columns: accuracy (%s, in %%), higher is better; Avg: mean accuracy over the tasks. Best "
    "value per column marked. Column groups: fraction of experts dropped per MoE layer.";

std::string caption(const SweepResults& r) {
  char buf[512];
  std::snprintf(buf, sizeof buf, kCaption, r.acc_metric.c_str());
  return buf;
}

}  // namespace

bool Table::has_std() const {
  for (const auto& row : rows)
    for (const auto& c : row.cells)
      if (c.present && c.n > 1) return true;
  return false;
}

Cell summarize(const std::vector<double>& values) {
  Cell c;
  c.n = int(values.size());
  if (values.empty()) return c;
  c.present = true;
  double sum = 0;
  for (double v : values) sum += v;
  c.mean = sum / double(values.size());
  if (values.size() > 1) {
    double ss = 0;
    for (double v : values) ss += (v - c.mean) * (v - c.mean);
    c.std = std::sqrt(ss / double(values.size() - 1));
  }
  return c;
}

void mark_best(Table& t) {
  for (size_t c = 0; c < t.columns.size(); ++c) {
    if (!t.columns[c].mark_best) continue;
    bool found = false;
    double best = 0;
    for (const auto& row : t.rows) {
      if (row.baseline || c >= row.cells.size() || !row.cells[c].present || std::isnan(row.cells[c].mean)) continue;
      const double v = row.cells[c].mean;
      if (!found || (t.columns[c].lower_is_better ? v < best : v > best)) best = v;
      found = true;
    }
    for (auto& row : t.rows)
      if (found && !row.baseline && c < row.cells.size() && row.cells[c].present) row.cells[c].best = row.cells[c].mean == best;
  }
}

std::vector<Table> build_result_tables(const SweepResults& r) {
  std::vector<Table> out;
  if (r.metrics.empty()) return out;
  const auto ctxs = table_contexts(r);
  auto finish = [&](Table t) {
    mark_best(t);
    if (!t.rows.empty()) out.push_back(std::move(t));
  };
  // Table 1 layout: criteria x drop ratios under one procedure, no recovery.
  for (const auto& ctx : ctxs) {
    if (ctx.ratios.empty()) continue;
    const std::string proc = ctx.procedures.empty() ? "one-shot" : ctx.procedures.front();
    Table t;
    t.id = "criteria" + ctx.id_suffix;
    t.title = "Criteria by drop ratio (" + procedure_label(proc) + ", no recovery)" + ctx.title_suffix;
    t.caption = caption(r) + " Top row: the unpruned model.";
    t.row_headers = {"Criterion"};
    t.columns = ratio_columns(r, ctx);
    Row base = grid_row(r, ctx, {"Full model"}, {ctx.model, ctx.calibration, "none", "", "", "none"});
    if (!base.cells.empty()) t.rows.push_back(std::move(base));
    for (const auto& crit : r.criteria) {
      Row row = grid_row(r, ctx, {crit}, {ctx.model, ctx.calibration, crit, "", proc, "none"});
      if (!row.cells.empty()) t.rows.push_back(std::move(row));
    }
    finish(std::move(t));
  }
  // Table 2: procedures per criterion.
  for (const auto& ctx : ctxs) {
    if (ctx.procedures.size() < 2) continue;
    Table t;
    t.id = "procedures" + ctx.id_suffix;
    std::string procs;
    for (const auto& p : ctx.procedures) procs += (procs.empty() ? "" : " / ") + procedure_label(p);
    t.title = "Procedures (" + procs + "), no recovery" + ctx.title_suffix;
    t.caption = caption(r);
    t.row_headers = {"Criterion", "Procedure"};
    t.columns = ratio_columns(r, ctx);
    Row base = grid_row(r, ctx, {"Full model", "-"}, {ctx.model, ctx.calibration, "none", "", "", "none"});
    if (!base.cells.empty()) t.rows.push_back(std::move(base));
    for (const auto& crit : r.criteria)
      for (const auto& proc : ctx.procedures) {
        Row row = grid_row(r, ctx, {crit, procedure_label(proc)}, {ctx.model, ctx.calibration, crit, "", proc, "none"});
        if (!row.cells.empty()) t.rows.push_back(std::move(row));
      }
    finish(std::move(t));
  }
  // Recovery: none / k-shot / fine-tuned per criterion (and procedure).
  for (const auto& ctx : ctxs) {
    if (ctx.recoveries.size() < 2) continue;
    const bool by_proc = ctx.procedures.size() > 1;
    Table t;
    t.id = "recovery" + ctx.id_suffix;
    std::string recs;
    for (const auto& rec : ctx.recoveries) recs += (recs.empty() ? "" : " / ") + recovery_label(rec);
    t.title = "Recovery (" + recs + ")" + ctx.title_suffix;
    t.caption = caption(r) + " k-shot: the task evaluation with k in-context examples (perplexity is not "
                             "re-measured); fine-tuned: recovery training after pruning.";
    t.row_headers = by_proc ? std::vector<std::string>{"Criterion", "Procedure", "Recovery"}
                            : std::vector<std::string>{"Criterion", "Recovery"};
    t.columns = ratio_columns(r, ctx);
    for (const auto& rec : ctx.recoveries) {
      std::vector<std::string> labels = {"Full model"};
      if (by_proc) labels.push_back("-");
      labels.push_back(recovery_label(rec));
      Row base = grid_row(r, ctx, labels, {ctx.model, ctx.calibration, "none", "", "", rec});
      if (!base.cells.empty()) t.rows.push_back(std::move(base));
    }
    for (const auto& crit : r.criteria)
      for (const auto& proc : ctx.procedures)
        for (const auto& rec : ctx.recoveries) {
          std::vector<std::string> labels = {crit};
          if (by_proc) labels.push_back(procedure_label(proc));
          labels.push_back(recovery_label(rec));
          Row row = grid_row(r, ctx, labels, {ctx.model, ctx.calibration, crit, "", proc, rec});
          if (!row.cells.empty()) t.rows.push_back(std::move(row));
        }
    finish(std::move(t));
  }
  return out;
}

Table build_compare_table(const SweepResults& a, const SweepResults& b) {
  const bool by_model = a.models.size() > 1 || b.models.size() > 1;
  const bool by_cal = a.calibrations.size() > 1 || b.calibrations.size() > 1;
  std::string name_a = a.name, name_b = b.name;
  if (name_a == name_b) {
    name_a += " (1)";
    name_b += " (2)";
  }
  // Grid points as row keys, in plan order of A then of B.
  using Key = std::vector<std::string>;
  auto key_of = [&](const SweepResults& r, const Job& j) {
    const bool base = tag(j, "criterion") == "none";
    Key k;
    if (by_model) k.push_back(r.model_name(tag(j, "model")));
    if (by_cal) k.push_back(base || tag(j, "calibration").empty() ? "-" : tag(j, "calibration"));
    k.push_back(base ? "Full model" : tag(j, "criterion"));
    k.push_back(base ? "0%" : ratio_label(tag(j, "ratio")));
    k.push_back(base ? "-" : procedure_label(tag(j, "procedure")));
    k.push_back(recovery_label(tag(j, "recovery")));
    return k;
  };
  std::vector<Key> keys;
  std::map<Key, std::vector<const EvalResult*>> in_a, in_b;
  for (const auto* side : {&a, &b}) {
    auto& dst = side == &a ? in_a : in_b;
    std::vector<const EvalResult*> evals;
    for (const auto& e : side->evals) evals.push_back(&e);
    std::stable_sort(evals.begin(), evals.end(), [&](const EvalResult* x, const EvalResult* y) {
      return seed_of(side->jobs[x->job]) < seed_of(side->jobs[y->job]);
    });
    for (const auto& e : side->evals) {
      Key k = key_of(*side, side->jobs[e.job]);
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
    }
    for (const auto* e : evals) dst[key_of(*side, side->jobs[e->job])].push_back(e);
  }
  // Rows in the tables' order: model, criterion (the unpruned model first, then A's
  // criteria, then B's), ratio, procedure, recovery ("none" first), calibration.
  std::vector<std::string> crits = {"Full model"}, recs = {"none"};
  for (const auto* side : {&a, &b}) {
    for (const auto& c : side->criteria)
      if (std::find(crits.begin(), crits.end(), c) == crits.end()) crits.push_back(c);
    for (const auto& e : side->evals) {
      const std::string rec = recovery_label(tag(side->jobs[e.job], "recovery"));
      if (std::find(recs.begin(), recs.end(), rec) == recs.end()) recs.push_back(rec);
    }
  }
  const std::vector<std::string> procs = {"-", "one-shot", "searched", "iterative", "Lottery"};
  auto rank = [](const std::vector<std::string>& order, const std::string& v) {
    return size_t(std::find(order.begin(), order.end(), v) - order.begin());
  };
  const size_t o = (by_model ? 1 : 0) + (by_cal ? 1 : 0);  // first of criterion, ratio, procedure, recovery
  std::stable_sort(keys.begin(), keys.end(), [&](const Key& x, const Key& y) {
    if (by_model && x[0] != y[0]) return x[0] < y[0];
    auto tuple = [&](const Key& k) {
      return std::make_tuple(rank(crits, k[o]), std::strtod(k[o + 1].c_str(), nullptr), rank(procs, k[o + 2]),
                             rank(recs, k[o + 3]), by_cal ? k[o - 1] : std::string());
    };
    return tuple(x) < tuple(y);
  });
  std::vector<Metric> metrics = a.metrics;
  for (const auto& m : b.metrics)
    if (std::none_of(metrics.begin(), metrics.end(), [&](const Metric& x) { return x.key == m.key; })) metrics.push_back(m);

  Table t;
  t.id = "compare";
  t.title = "Two sweeps side by side: " + name_a + " vs " + name_b;
  t.caption = "Each metric of sweep " + name_a + ", of sweep " + name_b + " and their difference (" + name_b +
              " - " + name_a + "), at the same grid point; means over seeds. PPL: perplexity; task columns: "
              "accuracy (" + a.acc_metric + ", in %). \"-\": not in that sweep.";
  if (by_model) t.row_headers.push_back("Model");
  if (by_cal) t.row_headers.push_back("Calibration");
  for (const char* h : {"Criterion", "Ratio", "Procedure", "Recovery"}) t.row_headers.push_back(h);
  for (const auto& m : metrics)
    for (const auto& side : {name_a, name_b, std::string("diff")})
      t.columns.push_back({m.label, side, m.lower_is_better, false, m.percent, 2});
  for (const auto& k : keys) {
    Row row;
    row.labels = k;
    row.baseline = k[t.row_headers.size() - 4] == "Full model";
    for (const auto& m : metrics) {
      const Cell ca = in_a.count(k) ? cell_of(in_a.at(k), m.key) : Cell{};
      const Cell cb = in_b.count(k) ? cell_of(in_b.at(k), m.key) : Cell{};
      Cell d;
      if (ca.present && cb.present) {
        d.present = true;
        d.n = 1;
        d.mean = cb.mean - ca.mean;
      }
      row.cells.insert(row.cells.end(), {ca, cb, d});
    }
    t.rows.push_back(std::move(row));
  }
  return t;
}

}  // namespace moelab::results::report
