#include "results/sweep_plan.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "core/common/error.h"
#include "core/common/json_file.h"
#include "core/common/json_integer.h"

namespace moelab::results {

void check_job_paths(const PlannedJob& j, const std::string& source) {
  // The scheduler writes 16 hex digits; a hand-made plan (tests, tools) may use any name of
  // this alphabet, which can name a file but never leave its folder.
  const bool safe_id = !j.id.empty() && j.id.size() <= 128 && std::all_of(j.id.begin(), j.id.end(), [](unsigned char c) {
                         return std::isalnum(c) || c == '-' || c == '_';
                       });
  if (!safe_id)
    throw InputError(source, "malformed job: id \"" + j.id + "\" is not a job id (letters, digits, - and _)");
  const std::string base = std::string(to_string(j.kind)) + "/" + j.id;
  const std::string ext = j.output.rfind(base, 0) == 0 ? j.output.substr(base.size()) : "/";
  if (!ext.empty() && ext != ".h5" && ext != ".json" && ext != ".jsonl")
    throw InputError(source, "malformed job " + j.id + ": output \"" + j.output + "\" is not " + base +
                                 "[.h5|.json|.jsonl] inside the results directory");
}

nlohmann::json job_to_json(const PlannedJob& j) {
  return {{"id", j.id},
          {"kind", to_string(j.kind)},
          {"label", j.label},
          {"deps", j.deps},
          {"args", j.args},
          {"output", j.output},
          {"tags", j.tags},
          {"resources",
           {{"ranks", j.resources.ranks}, {"gpus", j.resources.gpus}, {"mem", j.resources.mem}, {"time", j.resources.time}}}};
}

PlannedJob job_from_json(const nlohmann::json& j, const std::string& source) {
  try {
    PlannedJob out;
    out.id = j.at("id").get<std::string>();
    const std::string kind = j.at("kind").get<std::string>();
    const auto known = parse_job_kind(kind);
    if (!known) throw InputError(source, "malformed job " + out.id + ": kind " + not_a_word_of(kJobKindWords, kind));
    out.kind = *known;
    out.label = j.value("label", "");
    out.deps = j.at("deps").get<std::vector<std::string>>();
    out.args = j.at("args").get<std::vector<std::string>>();
    out.output = j.at("output").get<std::string>();
    out.tags = j.value("tags", std::map<std::string, std::string>{});
    if (j.contains("resources")) {  // absent in hand-made plans: the defaults
      const auto& r = j.at("resources");
      out.resources = {json_integer(r.at("ranks"), "resources.ranks"), json_integer(r.at("gpus"), "resources.gpus"),
                       r.at("mem").get<std::string>(), r.at("time").get<std::string>()};
    }
    check_job_paths(out, source);
    return out;
  } catch (const nlohmann::json::exception& e) {
    throw InputError(source, std::string("malformed job: ") + e.what());
  } catch (const JsonIntegerError& e) {
    throw InputError(source, std::string("malformed job: ") + e.what());
  }
}

nlohmann::json sweep_plan_to_json(const SweepPlan& plan) {
  nlohmann::json jobs = nlohmann::json::array();
  for (const auto& j : plan.jobs) jobs.push_back(job_to_json(j));
  nlohmann::json out = {{"name", plan.name}, {"spec", plan.spec}, {"jobs", jobs}};
  // The claims travel with the plan: `moelab report` reads nothing but the results directory.
  if (!plan.claims.empty()) {
    out["claims"] = nlohmann::json::array();
    for (const auto& c : plan.claims) out["claims"].push_back(claim_to_json(c));
  }
  return out;
}

SweepPlan read_sweep_plan(const std::string& path) {
  const nlohmann::json j = parse_json_file(path, "sweep plan");
  auto field = [&](const char* key) -> const nlohmann::json& {
    if (!j.is_object()) throw InputError(path, "(top level): expected an object {name, jobs}");
    auto it = j.find(key);
    if (it == j.end()) throw InputError(path, std::string(key) + ": missing");
    return *it;
  };
  SweepPlan plan;
  const nlohmann::json& name = field("name");
  if (!name.is_string()) throw InputError(path, "name: expected a string");
  plan.name = name.get<std::string>();
  if (j.contains("spec") && j.at("spec").is_string()) plan.spec = j.at("spec").get<std::string>();
  const nlohmann::json& jobs = field("jobs");
  if (!jobs.is_array()) throw InputError(path, "malformed job graph: expected a list of jobs");
  std::set<std::string> ids;
  for (size_t i = 0; i < jobs.size(); ++i) {
    plan.jobs.push_back(job_from_json(jobs[i], path));
    if (!ids.insert(plan.jobs.back().id).second)
      throw InputError(path, "jobs[" + std::to_string(i) + "].id: \"" + plan.jobs.back().id + "\" appears twice");
  }
  if (j.contains("claims")) {
    const nlohmann::json& cl = j.at("claims");
    if (!cl.is_array()) throw InputError(path, "claims: expected a list of claims");
    for (size_t i = 0; i < cl.size(); ++i)
      plan.claims.push_back(claim_from_json(cl[i], path, "claims[" + std::to_string(i) + "]"));
  }
  return plan;
}

}  // namespace moelab::results
