#include "results/pruning_plan_file.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "core/common/atomic_output.h"
#include "core/common/error.h"
#include "core/common/json_file.h"

namespace moelab::results {

void save_plan(const PruningPlan& p, const std::string& path) {
  nlohmann::json j = {{"plan_version", 1},     {"model", p.model},         {"architecture", p.architecture},
                      {"criterion", p.criterion}, {"direction", to_string(p.direction)}, {"ratio", p.ratio},
                      {"scope", to_string(p.scope)},      {"procedure", p.procedure}, {"scores", p.scores},
                      {"experts_per_token", p.experts_per_token}};
  nlohmann::json lr = nlohmann::json::object();
  for (const auto& [l, r] : p.layer_ratios) lr[std::to_string(l)] = r;
  j["layer_ratios"] = lr;
  nlohmann::json layers = nlohmann::json::object();
  for (const auto& [l, lp] : p.layers)
    layers[std::to_string(l)] = {{"num_experts", lp.num_experts}, {"keep", lp.keep}, {"drop", lp.drop}};
  j["layers"] = layers;
  nlohmann::json rounds = nlohmann::json::array();
  for (const auto& r : p.rounds) {
    nlohmann::json one = nlohmann::json::object();
    for (const auto& [l, d] : r) one[std::to_string(l)] = d;
    rounds.push_back(one);
  }
  j["rounds"] = rounds;
  if (!p.substitute.empty()) j["substitute"] = p.substitute;
  if (p.search)
    j["search"] = {{"budget", p.search->budget},   {"evaluations", p.search->evaluations},
                   {"seed", p.search->seed},       {"fitness", p.search->fitness},
                   {"uniform_fitness", p.search->uniform_fitness}, {"targets", p.search->targets},
                   {"data", p.search->data},       {"fitness_is", "mean KL(unpruned || pruned) per held-out target token"}};
  if (!p.protected_experts.empty()) {
    nlohmann::json prot = nlohmann::json::object();
    for (const auto& [l, ids] : p.protected_experts) prot[std::to_string(l)] = ids;
    j["protected"] = prot;
    j["protect_rule"] = p.protect_rule;
  }
  write_file_atomic(path, j.dump(1));
}

PruningPlan load_plan(const std::string& path) {
  return read_json_file(path, "pruning plan", [&](const nlohmann::json& j) {
    PruningPlan p;
    if (json_integer_or(j, "plan_version", 0) != 1) throw InputError(path, "plan_version must be 1");
    p.model = j.value("model", "");
    p.architecture = j.value("architecture", "");
    p.criterion = j.value("criterion", "");
    const std::string direction = j.value("direction", "min");
    if (const auto d = parse_prune_direction(direction)) p.direction = *d;
    else throw InputError(path, "direction: " + not_a_word_of(kPruneDirectionWords, direction));
    p.ratio = j.value("ratio", 0.0);
    const std::string scope = j.value("scope", "uniform");
    if (const auto s = parse_prune_scope(scope)) p.scope = *s;
    else throw InputError(path, "scope: " + not_a_word_of(kPruneScopeWords, scope));
    p.procedure = j.value("procedure", "manual");
    p.scores = j.value("scores", "");
    p.experts_per_token = json_integer_or(j, "experts_per_token", 0);
    if (j.contains("layer_ratios"))
      for (const auto& [l, r] : j["layer_ratios"].items()) p.layer_ratios[std::stoll(l)] = r.get<double>();
    if (!j.contains("layers") || !j["layers"].is_object()) throw InputError(path, "no \"layers\" object");
    for (const auto& [l, body] : j["layers"].items()) {
      LayerPlan lp;
      lp.num_experts = json_integer(body.at("num_experts"), "layers." + l + ".num_experts");
      // Bounded before the drop list below is built from it (fuzzing: a huge count
      // in an 80-byte file ran out of memory). No MoE has a million experts a layer.
      if (lp.num_experts < 0 || lp.num_experts > (int64_t(1) << 20))
        throw InputError(path, "layers." + l + ".num_experts: " + std::to_string(lp.num_experts) +
                                   " is not an expert count (0 to 1048576)");
      lp.keep = json_integer_list(body.at("keep"), "layers." + l + ".keep");
      std::sort(lp.keep.begin(), lp.keep.end());
      std::set<int64_t> keep(lp.keep.begin(), lp.keep.end());
      for (int64_t e = 0; e < lp.num_experts; ++e)
        if (!keep.count(e)) lp.drop.push_back(e);
      p.layers[std::stoll(l)] = std::move(lp);
    }
    if (j.contains("rounds"))
      for (const auto& r : j["rounds"]) {
        std::map<int64_t, std::vector<int64_t>> one;
        for (const auto& [l, d] : r.items()) one[std::stoll(l)] = json_integer_list(d, "rounds[]." + l);
        p.rounds.push_back(std::move(one));
      }
    p.substitute = j.value("substitute", "");
    if (j.contains("protected")) {
      if (!j["protected"].is_object()) throw InputError(path, "\"protected\" must be an object of layer: [experts]");
      for (const auto& [l, ids] : j["protected"].items())
        p.protected_experts[std::stoll(l)] = json_integer_list(ids, "protected." + l);
      p.protect_rule = j.value("protect_rule", "");
    }
    return p;
  });
}

}  // namespace moelab::results
