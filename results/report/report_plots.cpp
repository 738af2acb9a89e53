#include "results/report/report_plots.h"

#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/common/atomic_output.h"
#include "core/common/error.h"
#include "results/report/report_kendall.h"

#ifndef MOELAB_PLOTS_SCRIPT
#define MOELAB_PLOTS_SCRIPT "results/report/plots.py"
#endif

namespace moelab::results::report {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json number_or_null(double v) { return std::isnan(v) ? json(nullptr) : json(v); }

// Perplexity vs ratio of one context: one series per (criterion, procedure), no recovery.
json ppl_series(const SweepResults& r, const Context& ctx, const Metric& m, const std::string& prefix) {
  const Cell base = grid_cell(r, {ctx.model, ctx.calibration, "none", "", "", "none"}, m.key);
  json series = json::array();
  for (const auto& crit : r.criteria)
    for (const auto& proc : ctx.procedures) {
      json x = json::array(), y = json::array(), err = json::array();
      if (base.present) {
        x.push_back(0.0);
        y.push_back(base.mean);
        err.push_back(base.std);
      }
      bool any = false;
      for (const auto& ratio : ctx.ratios) {
        const Cell c = grid_cell(r, {ctx.model, ctx.calibration, crit, ratio, proc, "none"}, m.key);
        if (!c.present) continue;
        any = true;
        x.push_back(std::strtod(ratio.c_str(), nullptr));
        y.push_back(c.mean);
        err.push_back(c.std);
      }
      if (!any) continue;
      std::string label = prefix + crit;
      if (ctx.procedures.size() > 1) label += " " + procedure_label(proc);
      series.push_back({{"label", label}, {"criterion", crit}, {"procedure", proc}, {"x", x}, {"y", y}, {"yerr", err}});
    }
  return series;
}

std::string file_safe(const std::string& s) {
  std::string out;
  for (char c : s) out += std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ? c : '_';
  return out;
}

std::string last_line(const std::string& text) {
  std::string t = text;
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.pop_back();
  const size_t nl = t.find_last_of('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

}  // namespace

std::string plots_script_path() {
  const char* env = std::getenv("MOELAB_PLOTS_SCRIPT");
  return env && *env ? env : MOELAB_PLOTS_SCRIPT;
}

json plot_data(const SweepResults& r, const std::vector<UsageSet>& usage, const std::vector<Table>& kendall,
               const SweepResults* other) {
  json figures = json::array();
  const auto ctxs = table_contexts(r);
  for (const auto& ctx : ctxs)
    for (const auto& m : r.metrics) {
      if (m.key.rfind("ppl:", 0) != 0 || ctx.ratios.empty()) continue;
      json series = ppl_series(r, ctx, m, "");
      if (series.empty()) continue;
      figures.push_back({{"type", "ppl_vs_ratio"},
                         {"stem", "ppl-" + file_safe(m.key.substr(4)) + ctx.id_suffix},
                         {"title", "Perplexity (" + m.key.substr(4) + ") vs drop ratio" + ctx.title_suffix},
                         {"caption", "Perplexity on " + m.key.substr(4) +
                                         " (log scale) against the fraction of experts dropped per MoE layer, "
                                         "no recovery; ratio 0: the unpruned model; bars: std over seeds."},
                         {"series", series}});
    }
  for (const auto& s : r.scores) {
    json crits = json::array();
    for (const auto& name : ordered_criteria(r, s)) {
      json layers = json::array(), rows = json::array();
      for (const auto& [layer, scores] : s.criteria.at(name)) {
        layers.push_back(layer);
        json row = json::array();
        for (double v : scores) row.push_back(number_or_null(v));
        rows.push_back(row);
      }
      crits.push_back({{"name", name}, {"layers", layers}, {"scores", rows}});
    }
    if (crits.empty()) continue;
    figures.push_back({{"type", "score_heatmaps"},
                       {"stem", "scores-" + score_set_stem(r, s)},
                       {"title", "Expert scores per layer (" + score_set_name(r, s) + ")"},
                       {"caption", "Each criterion's expert scores, min-max normalised within each layer "
                                   "(0: lowest score, dropped first by Min-X; 1: highest)."},
                       {"criteria", crits}});
  }
  for (const auto& model : r.models) {
    json sets = json::array();
    for (const auto& u : usage) {
      if (u.model != model) continue;
      json tokens = json::array();
      for (const auto& row : u.tokens) tokens.push_back(row);
      sets.push_back({{"calibration", u.calibration.empty() ? "(unnamed)" : u.calibration},
                      {"layers", u.layers},
                      {"tokens", tokens},
                      {"num_tokens", u.num_tokens}});
    }
    if (sets.empty()) continue;
    const std::string suffix = r.models.size() > 1 ? "-" + file_safe(r.model_name(model)) : "";
    figures.push_back({{"type", "usage"},
                       {"stem", "usage" + suffix},
                       {"title", "Expert usage per calibration set" + (suffix.empty() ? "" : ": " + r.model_name(model))},
                       {"caption", "Share of the routed (token, expert) pairs of each MoE layer that go to each "
                                   "expert, over each calibration set (tokens_E of the calibration statistics)."},
                       {"sets", sets}});
  }
  for (const auto& t : kendall) {
    json labels = json::array(), matrix = json::array();
    for (const auto& row : t.rows) {
      labels.push_back(row.labels[0]);
      json vals = json::array();
      for (const auto& c : row.cells) vals.push_back(c.present ? json(c.mean) : json(nullptr));
      matrix.push_back(vals);
    }
    figures.push_back({{"type", "kendall"}, {"stem", t.id}, {"title", t.title},
                       {"caption", "Kendall tau-b between criteria's expert scores, mean over MoE layers."},
                       {"labels", labels}, {"matrix", matrix}});
  }
  if (other) {
    const auto octxs = table_contexts(*other);
    if (!ctxs.empty() && !octxs.empty())
      for (const auto& m : r.metrics) {
        if (m.key.rfind("ppl:", 0) != 0) continue;
        bool in_other = false;
        for (const auto& om : other->metrics) in_other |= om.key == m.key;
        if (!in_other) continue;
        std::string name_a = r.name, name_b = other->name;
        if (name_a == name_b) {
          name_a += " (1)";
          name_b += " (2)";
        }
        json a = ppl_series(r, ctxs[0], m, name_a + ": "), b = ppl_series(*other, octxs[0], m, name_b + ": ");
        for (auto& s : b) s["dashed"] = true;
        for (auto& s : b) a.push_back(s);
        if (a.empty()) continue;
        figures.push_back({{"type", "ppl_vs_ratio"},
                           {"stem", "compare-ppl-" + file_safe(m.key.substr(4))},
                           {"title", "Perplexity (" + m.key.substr(4) + "): " + name_a + " (solid) vs " + name_b +
                                         " (dashed)"},
                           {"caption", "Both sweeps' perplexity against the drop ratio, no recovery."},
                           {"series", a}});
      }
  }
  return {{"sweep", r.name}, {"figures", figures}};
}

PlotOutcome make_plots(const json& data, const fs::path& dir) {
  PlotOutcome out;
  fs::create_directories(dir);
  write_file_atomic(dir / "plot_data.json", data.dump(1) + "\n");
  const std::string script = plots_script_path();
  if (!fs::exists(script)) {
    out.note = "plots skipped: the plots script " + script + " does not exist (set MOELAB_PLOTS_SCRIPT)";
    return out;
  }
  const fs::path log = dir / "plots.log";
  const std::string data_path = (dir / "plot_data.json").string(), dir_s = dir.string();
  const pid_t pid = ::fork();
  if (pid < 0) throw InputError("cannot start python3 for the plots");
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
    }
    ::setenv("MPLBACKEND", "Agg", 1);
    const char* argv[] = {"python3", script.c_str(), data_path.c_str(), dir_s.c_str(), nullptr};
    ::execvp("python3", const_cast<char* const*>(argv));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::string text;
  {
    std::ifstream in(log);
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  fs::remove(log);
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (code == 127) {
    out.note = "plots skipped: python3 was not found on PATH";
    return out;
  }
  if (code == 3) {  // plots.py: matplotlib cannot be imported
    out.note = "plots skipped: " + last_line(text);
    return out;
  }
  if (code != 0) throw InputError(script, "failed (exit " + std::to_string(code) + "): " + last_line(text));
  const fs::path manifest = dir / "manifest.json";
  std::ifstream in(manifest);
  if (!in) throw InputError(manifest.string(), "the plots script wrote no manifest");
  try {
    for (const auto& p : json::parse(in))
      out.plots.push_back({p.at("stem").get<std::string>(), p.at("title").get<std::string>(),
                           p.at("caption").get<std::string>()});
  } catch (const json::exception& e) {
    throw InputError(manifest.string(), std::string("malformed plot manifest: ") + e.what());
  }
  out.made = true;
  return out;
}

}  // namespace moelab::results::report
