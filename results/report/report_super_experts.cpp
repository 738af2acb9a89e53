#include "results/report/report_super_experts.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>

#include "core/common/error.h"

namespace moelab::results::report {

std::vector<std::string> super_expert_notes(const std::string& results_dir, const SweepResults& r) {
  // (model, calibration, rule, experts) -> prune jobs; in plan order of first appearance.
  using Key = std::tuple<std::string, std::string, std::string, std::string>;
  std::vector<Key> order;
  std::map<Key, int> jobs;
  for (const auto& j : r.jobs) {
    if (j.kind != JobKind::kPrune || j.state != "done") continue;
    if (std::find(j.args.begin(), j.args.end(), "--protect-super-experts") == j.args.end()) continue;
    const std::string path = (std::filesystem::path(results_dir) / (j.output + ".plan.json")).string();
    std::ifstream in(path);
    if (!in) throw InputError(path, "missing, though the prune job's record says done");
    nlohmann::json plan;
    try {
      plan = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw InputError(path, std::string("not a pruning plan: ") + e.what());
    }
    std::string experts;
    if (plan.contains("protected") && plan["protected"].is_object()) {
      std::map<long long, std::vector<long long>> by_layer;  // numeric layer order
      for (const auto& [l, ids] : plan["protected"].items()) {
        if (!ids.is_array()) throw InputError(path, "\"protected\"." + l + " is not a list of experts");
        for (const auto& e : ids) {
          if (!e.is_number_integer()) throw InputError(path, "\"protected\"." + l + " holds a non-integer");
          by_layer[std::stoll(l)].push_back(e.get<long long>());
        }
      }
      for (const auto& [l, ids] : by_layer) {
        experts += (experts.empty() ? "" : "; ") + std::string("layer ") + std::to_string(l) + ":";
        for (size_t i = 0; i < ids.size(); ++i) experts += (i ? ", " : " ") + std::to_string(ids[i]);
      }
    }
    if (experts.empty()) experts = "none found";
    const std::string rule = plan.value("protect_rule", "");
    const std::string model = j.tags.count("model") ? r.model_name(j.tags.at("model")) : "";
    const std::string cal = j.tags.count("calibration") ? j.tags.at("calibration") : "";
    const Key key{model, cal, rule, experts};
    if (!jobs.count(key)) order.push_back(key);
    ++jobs[key];
  }
  std::vector<std::string> out;
  for (const auto& k : order) {
    const auto& [model, cal, rule, experts] = k;
    const int n = jobs.at(k);
    out.push_back("super experts of " + model + (cal.empty() ? "" : " (calibration " + cal + ")") + ", kept by " +
                  std::to_string(n) + " prune job" + (n == 1 ? "" : "s") + ": " + experts +
                  (rule.empty() ? "" : " (" + rule + ")"));
  }
  return out;
}

}  // namespace moelab::results::report
