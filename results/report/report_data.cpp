#include "results/report/report_data.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/common/error.h"
#include "results/job_record.h"
#include "results/lm_eval_records.h"
#include "results/result_records.h"
#include "results/scores_file.h"

namespace moelab::results::report {
namespace fs = std::filesystem;

namespace {

void add_unique(std::vector<std::string>& v, const std::string& s) {
  if (!s.empty() && std::find(v.begin(), v.end(), s) == v.end()) v.push_back(s);
}

std::string arg_after(const std::vector<std::string>& args, const std::string& flag) {
  for (size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == flag) return args[i + 1];
  return "";
}

// plan.json through its one reader (sweep_plan.h: fields, ids, paths inside the directory),
// then what the report needs of it: every prune, finetune and eval job placed by its tags.
std::vector<Job> read_plan(const std::string& plan_path, std::string& name, std::vector<ClaimSpec>& claims) {
  SweepPlan plan = read_sweep_plan(plan_path);
  name = plan.name;
  claims = std::move(plan.claims);
  auto fail = [&](const std::string& field, const std::string& problem) {
    throw InputError(plan_path, field + ": " + problem);
  };
  std::vector<Job> out;
  for (size_t i = 0; i < plan.jobs.size(); ++i) {
    Job job;
    static_cast<PlannedJob&>(job) = std::move(plan.jobs[i]);
    const std::string field = "jobs[" + std::to_string(i) + "]";
    if (job.kind == JobKind::kEval || job.kind == JobKind::kPrune || job.kind == JobKind::kFinetune) {
      for (const char* key : {"model", "criterion", "ratio", "procedure", "recovery"})
        if (!job.tags.count(key)) fail(field + ".tags." + key, std::string("missing (a ") + to_string(job.kind) + " job is placed by its tags)");
      const std::string& r = job.tags.at("ratio");
      char* end = nullptr;
      const double v = std::strtod(r.c_str(), &end);
      if (r.empty() || *end != '\0' || !(v >= 0 && v < 1))
        fail(field + ".tags.ratio", "\"" + r + "\" is not a fraction in [0, 1)");
    }
    out.push_back(std::move(job));
  }
  return out;
}

// The metric's value; NaN where the record says null (undefined, results_format.md).
double metric(const ResultRecord& r, const std::string& name, const std::string& path) {
  auto it = r.metrics.find(name);
  if (it != r.metrics.end() && it->is_null()) return std::numeric_limits<double>::quiet_NaN();
  if (it == r.metrics.end() || !it->is_number())
    throw InputError(path, "task \"" + r.task + "\": metrics." + name + " is missing or not a number");
  return it->get<double>();
}

// A scoring job's scores file through its one reader (scores_file.h).
ScoreSet read_score_set(const std::string& path, size_t job_index) {
  ScoreSet s;
  s.job = job_index;
  for (auto& c : read_scores(path).criteria) s.criteria[c.name] = std::move(c.layers);
  return s;
}

}  // namespace

std::string ratio_label(const std::string& ratio_tag) {
  const double v = std::strtod(ratio_tag.c_str(), nullptr) * 100;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g%%", std::round(v * 1e6) / 1e6);
  return buf;
}

std::string SweepResults::model_name(const std::string& tag) const {
  auto base = [](const std::string& t) {
    std::string s = t;
    while (s.size() > 1 && s.back() == '/') s.pop_back();
    const size_t slash = s.find_last_of('/');
    return slash == std::string::npos ? s : s.substr(slash + 1);
  };
  const std::string b = base(tag);
  for (const auto& m : models)
    if (m != tag && base(m) == b) return tag;
  return b;
}

std::string SweepResults::calibration_of(const Job& calib) const {
  for (const auto& score : jobs) {
    if (score.kind != JobKind::kScore || std::find(score.deps.begin(), score.deps.end(), calib.id) == score.deps.end()) continue;
    for (const auto& prune : jobs)
      if (prune.kind == JobKind::kPrune && std::find(prune.deps.begin(), prune.deps.end(), score.id) != prune.deps.end()) {
        auto it = prune.tags.find("calibration");
        if (it != prune.tags.end() && !it->second.empty()) return it->second;
      }
  }
  // Fallback: the job graph labels calibration jobs "calibrate <set> for <criteria>".
  const std::string prefix = "calibrate ";
  if (calib.label.rfind(prefix, 0) == 0) {
    const size_t end = calib.label.find(" for ", prefix.size());
    return calib.label.substr(prefix.size(), end == std::string::npos ? std::string::npos : end - prefix.size());
  }
  return "";
}

SweepResults load_sweep_results(const std::string& dir, const std::string& acc_metric) {
  const fs::path root(dir);
  if (!fs::is_directory(root)) throw InputError(dir, "no such results directory");
  const fs::path plan = root / "plan.json";
  if (!fs::exists(plan)) throw InputError(dir, "not a sweep results directory (no plan.json)");
  SweepResults r;
  r.acc_metric = acc_metric;
  r.jobs = read_plan(plan.string(), r.name, r.claims);

  for (auto& job : r.jobs) {
    if (const auto record = read_job_record(root.string(), job.id)) job.state = record->state;
    if (job.state != "done") r.not_done.push_back(job.state + ": " + job.label + " (" + job.id + ")");
    if (job.kind == JobKind::kPrune || job.kind == JobKind::kEval || job.kind == JobKind::kFinetune) {
      add_unique(r.models, job.tags.at("model"));
      if (job.tags.at("criterion") != "none") add_unique(r.criteria, job.tags.at("criterion"));
      auto cal = job.tags.find("calibration");
      if (cal != job.tags.end()) add_unique(r.calibrations, cal->second);
    }
  }

  std::vector<std::string> domains, tasks;
  std::vector<Metric> lm_tasks;  // lm-eval tasks, in first-seen order
  for (size_t i = 0; i < r.jobs.size(); ++i) {
    const Job& job = r.jobs[i];
    if (job.state != "done") continue;
    const std::string path = (root / job.output).string();
    if (job.kind == JobKind::kEval) {
      if (!fs::exists(path)) throw InputError(path, "missing, though the job's record says done");
      EvalResult e;
      e.job = i;
      for (const auto& rec : read_records(path)) {
        if (rec.kind == RecordKind::kPerplexity) {
          if (const double v = metric(rec, "perplexity", path); !std::isnan(v)) e.values["ppl:" + rec.task] = v;
          add_unique(domains, rec.task);
        } else if (rec.kind == RecordKind::kMultipleChoice) {
          if (const double v = metric(rec, acc_metric, path); !std::isnan(v)) e.values["acc:" + rec.task] = v;
          add_unique(tasks, rec.task);
        } else if (rec.kind == RecordKind::kLmEval) {
          // One column per lm-eval task: its primary metric (the first of its metric_list).
          const std::string primary = rec.details.value("primary_metric", std::string());
          if (primary.empty()) throw InputError(path, "an lm_eval record of " + rec.task + " has no details.primary_metric");
          if (const double v = metric(rec, primary, path); !std::isnan(v)) e.values["lm:" + rec.task] = v;
          if (std::none_of(lm_tasks.begin(), lm_tasks.end(), [&](const Metric& m) { return m.key == "lm:" + rec.task; })) {
            const std::string base = primary.substr(0, primary.find(','));
            const auto& hib = rec.details.value("higher_is_better", nlohmann::json::object());
            const bool lower = hib.contains(base) && hib.at(base).is_boolean() && !hib.at(base).get<bool>();
            lm_tasks.push_back({"lm:" + rec.task, rec.task + " " + primary, lower, lm_eval_metric_is_fraction(primary)});
          }
        }
      }
      r.evals.push_back(std::move(e));
    } else if (job.kind == JobKind::kScore) {
      if (!fs::exists(path)) throw InputError(path, "missing, though the job's record says done");
      ScoreSet s = read_score_set(path, i);
      s.seed = arg_after(job.args, "--seed");
      s.model = arg_after(job.args, "--model");
      for (const auto& prune : r.jobs)
        if (prune.kind == JobKind::kPrune && std::find(prune.deps.begin(), prune.deps.end(), job.id) != prune.deps.end()) {
          s.model = prune.tags.at("model");
          if (prune.tags.count("seed")) s.seed = prune.tags.at("seed");
          auto cal = prune.tags.find("calibration");
          if (cal != prune.tags.end() && !cal->second.empty()) s.calibration = cal->second;
        }
      r.scores.push_back(std::move(s));
    }
  }
  for (const auto& d : domains) r.metrics.push_back({"ppl:" + d, d + " PPL", true, false});
  for (const auto& t : tasks) r.metrics.push_back({"acc:" + t, t, false, true});
  if (tasks.size() >= 2) {
    r.metrics.push_back({"avg", "Avg", false, true});
    for (auto& e : r.evals) {
      double sum = 0;
      size_t n = 0;
      for (const auto& t : tasks)
        if (auto it = e.values.find("acc:" + t); it != e.values.end()) {
          sum += it->second;
          ++n;
        }
      if (n == tasks.size()) e.values["avg"] = sum / double(n);
    }
  }
  for (const auto& m : lm_tasks) r.metrics.push_back(m);  // after Avg, not in it: their metrics differ in kind
  return r;
}

}  // namespace moelab::results::report
