#include "results/scores_file.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/common/atomic_output.h"
#include "core/common/error.h"
#include "core/common/json_file.h"

namespace moelab::results {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

}  // namespace

const CriterionScores& ScoresFile::get(const std::string& name, const std::string& path) const {
  std::string present;
  for (const auto& c : criteria) {
    if (lower(c.name) == lower(name)) return c;
    present += (present.empty() ? "" : ", ") + c.name;
  }
  throw InputError(path, "has no scores for criterion \"" + name + "\" (it has: " + (present.empty() ? "none" : present) +
                             ")");
}

void write_scores(const ScoresFile& scores, const std::string& path) {
  nlohmann::json out = {{"stats", scores.stats}, {"model", scores.model}, {"criteria", nlohmann::json::object()}};
  for (const auto& c : scores.criteria) {
    nlohmann::json per_layer = nlohmann::json::object();
    for (const auto& [layer, v] : c.layers) per_layer[std::to_string(layer)] = v;
    out["criteria"][c.name] = {{"version", c.version}, {"layers", per_layer}};
  }
  write_file_atomic(path, out.dump(1));
}

ScoresFile read_scores(const std::string& path) {
  const nlohmann::json j = parse_json_file(path, "scores file");
  auto fail = [&](const std::string& field, const std::string& problem) { throw InputError(path, field + ": " + problem); };
  if (!j.is_object()) fail("(top level)", "expected an object {stats, model, criteria}");
  ScoresFile out;
  for (const char* key : {"stats", "model"}) {
    if (!j.contains(key)) continue;
    if (!j.at(key).is_string()) fail(key, "expected a string");
    (std::string(key) == "stats" ? out.stats : out.model) = j.at(key).get<std::string>();
  }
  if (!j.contains("criteria")) fail("criteria", "missing");
  const nlohmann::json& crits = j.at("criteria");
  if (!crits.is_object()) fail("criteria", "expected an object {criterion: {layers: ...}}");
  for (const auto& [name, body] : crits.items()) {
    const std::string field = "criteria." + name;
    if (!body.is_object()) fail(field, "expected an object {version, layers}");
    CriterionScores c;
    c.name = name;
    if (body.contains("version")) {
      if (!body.at("version").is_number_integer()) fail(field + ".version", "expected an integer");
      c.version = body.at("version").get<int>();
    }
    if (!body.contains("layers")) fail(field + ".layers", "missing");
    const nlohmann::json& layers = body.at("layers");
    if (!layers.is_object()) fail(field + ".layers", "expected an object {layer: [scores]}");
    for (const auto& [layer, scores] : layers.items()) {
      const std::string lf = field + ".layers." + layer;
      char* end = nullptr;
      errno = 0;
      const long long l = std::strtoll(layer.c_str(), &end, 10);
      if (layer.empty() || *end != '\0' || l < 0 || errno == ERANGE) fail(lf, "the layer key is not a layer index");
      if (!scores.is_array()) fail(lf, "expected a list of scores");
      std::vector<double> v;
      v.reserve(scores.size());
      for (size_t e = 0; e < scores.size(); ++e) {
        if (scores[e].is_null()) {
          v.push_back(std::numeric_limits<double>::quiet_NaN());
        } else if (scores[e].is_number()) {
          v.push_back(scores[e].get<double>());
        } else {
          fail(lf + "[" + std::to_string(e) + "]", "expected a number");
        }
      }
      c.layers[l] = std::move(v);
    }
    out.criteria.push_back(std::move(c));
  }
  return out;
}

}  // namespace moelab::results
