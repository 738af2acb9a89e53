#include "results/merge_plan_file.h"

#include <nlohmann/json.hpp>

#include "core/common/atomic_output.h"
#include "core/common/error.h"
#include "core/common/json_file.h"

namespace moelab::results {

void save_merge_plan(const MergePlan& p, const std::string& path) {
  nlohmann::json j = {{"merge_plan_version", 1},
                      {"model", p.model},
                      {"architecture", p.architecture},
                      {"stats", p.stats},
                      {"ratio", p.ratio},
                      {"method", p.method},
                      {"similarity", "cosine"},
                      {"linkage", p.method == "ream" ? "nearest_reap_centroid" : "average"},
                      {"weighting", p.method == "ream" ? "reap_saliency" : "usage_frequency"},
                      {"router_merge", p.router_merge},
                      {"experts_per_token", p.experts_per_token}};
  nlohmann::json layers = nlohmann::json::object();
  for (const auto& [l, lm] : p.layers)
    layers[std::to_string(l)] = {
        {"num_experts", lm.num_experts}, {"groups", lm.groups}, {"weights", lm.weights}, {"dominant", lm.dominant}};
  j["layers"] = layers;
  write_file_atomic(path, j.dump(1));
}

MergePlan load_merge_plan(const std::string& path) {
  return read_json_file(path, "merge plan", [&](const nlohmann::json& j) {
    MergePlan p;
    if (json_integer_or(j, "merge_plan_version", 0) != 1) throw InputError(path, "merge_plan_version must be 1");
    p.model = j.value("model", "");
    p.architecture = j.value("architecture", "");
    p.stats = j.value("stats", "");
    p.ratio = j.value("ratio", 0.0);
    p.method = j.value("method", "hc-smoe");
    if (p.method != "hc-smoe" && p.method != "ream")
      throw InputError(path, "\"method\" must be hc-smoe or ream, not \"" + p.method + "\"");
    p.router_merge = j.value("router_merge", "avg");
    if (p.router_merge != "avg" && p.router_merge != "dominant")
      throw InputError(path, "router merge \"" + p.router_merge + "\" is not avg or dominant");
    p.experts_per_token = json_integer_or(j, "experts_per_token", 0);
    if (!j.contains("layers") || !j["layers"].is_object()) throw InputError(path, "no \"layers\" object");
    for (const auto& [l, body] : j["layers"].items()) {
      LayerMerge lm;
      lm.num_experts = json_integer(body.at("num_experts"), "layers." + l + ".num_experts");
      const auto& groups = body.at("groups");
      if (!groups.is_array()) throw JsonIntegerError("field \"layers." + l + ".groups\" must be a list of lists");
      for (const auto& g : groups) lm.groups.push_back(json_integer_list(g, "layers." + l + ".groups"));
      lm.weights = body.at("weights").get<std::vector<std::vector<double>>>();
      lm.dominant = json_integer_list(body.at("dominant"), "layers." + l + ".dominant");
      p.layers[std::stoll(l)] = std::move(lm);
    }
    return p;
  });
}

}  // namespace moelab::results
