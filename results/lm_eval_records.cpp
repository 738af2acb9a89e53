#include "results/lm_eval_records.h"

#include "core/common/error.h"

namespace moelab::results {
namespace {

using ojson = nlohmann::ordered_json;

const ojson& member(const ojson& j, const std::string& key, const std::string& source, const std::string& field) {
  if (!j.is_object() || !j.contains(key)) throw InputError(source, field + ": missing");
  return j.at(key);
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

bool lm_eval_metric_is_fraction(const std::string& metric) {
  const std::string m = metric.substr(0, metric.find(','));
  return m.rfind("acc", 0) == 0 || m == "exact_match" || m == "f1" || m == "mc1" || m == "mc2" || ends_with(m, "_acc");
}

std::vector<ResultRecord> lm_eval_records(const ojson& out, const std::string& source, const std::string& model,
                                          const nlohmann::json& settings, int64_t world_size) {
  const ojson& results = member(out, "results", source, "results");
  if (!results.is_object()) throw InputError(source, "results: expected an object of tasks");
  const ojson empty = ojson::object();
  const ojson& nshot = out.contains("n-shot") ? out.at("n-shot") : empty;
  const ojson& nsamples = out.contains("n-samples") ? out.at("n-samples") : empty;
  const ojson& better = out.contains("higher_is_better") ? out.at("higher_is_better") : empty;
  const ojson& versions = out.contains("versions") ? out.at("versions") : empty;
  const ojson& config = out.contains("config") ? out.at("config") : empty;
  std::vector<ResultRecord> recs;
  for (const auto& [task, entry] : results.items()) {
    const std::string field = "results." + task;
    if (!entry.is_object()) throw InputError(source, field + ": expected an object of metrics");
    ResultRecord r;
    r.model = model;
    r.task = task;
    r.kind = RecordKind::kLmEval;
    r.world_size = world_size;
    std::string primary;
    for (const auto& [key, v] : entry.items()) {
      const size_t comma = key.find(',');
      if (comma == std::string::npos) continue;  // name, alias, sample_len: not metrics
      const std::string name = ends_with(key, ",none") ? key.substr(0, comma) : key;
      const bool stderr_key = key.substr(0, comma).size() >= 7 && ends_with(key.substr(0, comma), "_stderr");
      if (v.is_number()) {
        r.metrics[name] = v.get<double>();
      } else if (stderr_key && (v.is_string() || v.is_null())) {
        r.metrics[name] = nullptr;  // lm-eval's "N/A": one item, or a metric without a stderr
      } else {
        throw InputError(source, field + "." + key + ": expected a number");
      }
      if (primary.empty() && !stderr_key) primary = name;
    }
    if (primary.empty()) throw InputError(source, field + ": no metric (keys \"<metric>,<filter>\")");
    nlohmann::json s = settings;
    if (nshot.contains(task) && nshot.at(task).is_number_integer()) s["num_fewshot"] = nshot.at(task).get<int64_t>();
    s["limit"] = config.contains("limit") && config.at("limit").is_number() ? nlohmann::json(config.at("limit").get<double>())
                                                                              : nlohmann::json(nullptr);
    if (config.contains("fewshot_seed") && config.at("fewshot_seed").is_number_integer())
      s["fewshot_seed"] = config.at("fewshot_seed").get<int64_t>();
    if (out.contains("lm_eval_version") && out.at("lm_eval_version").is_string())
      s["lm_eval_version"] = out.at("lm_eval_version").get<std::string>();
    r.settings = s;
    r.details["primary_metric"] = primary;
    nlohmann::json hib = nlohmann::json::object();
    if (better.contains(task) && better.at(task).is_object())
      for (const auto& [m, b] : better.at(task).items())
        if (b.is_boolean()) hib[m] = b.get<bool>();
    r.details["higher_is_better"] = hib;
    if (versions.contains(task) && !versions.at(task).is_null())
      r.details["task_version"] = versions.at(task).is_string() ? versions.at(task).get<std::string>()
                                                                 : versions.at(task).dump();
    if (nsamples.contains(task) && nsamples.at(task).is_object()) {
      const ojson& n = nsamples.at(task);
      if (n.contains("effective") && n.at("effective").is_number_integer()) r.n_items = n.at("effective").get<int64_t>();
      if (n.contains("original") && n.at("original").is_number_integer())
        r.details["n_samples_original"] = n.at("original").get<int64_t>();
    }
    recs.push_back(std::move(r));
  }
  if (recs.empty()) throw InputError(source, "results: no task");
  return recs;
}

}  // namespace moelab::results
