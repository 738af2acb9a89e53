#include "results/claims.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <set>

#include "core/common/error.h"

namespace moelab::results {
using nlohmann::json;

namespace {

const std::set<std::string> kKeys = {"paper", "claim", "kind",   "metric",   "select",
                                     "among", "within", "versus", "at_least", "reason"};

struct Reader {
  const std::string& source;
  const std::string& field;
  [[noreturn]] void fail(const std::string& key, const std::string& problem) const {
    throw InputError(source, field + (key.empty() ? "" : "." + key) + ": " + problem);
  }
  std::string str(const json& j, const std::string& key) const {
    if (!j.contains(key)) fail(key, "missing");
    const json& v = j.at(key);
    if (!v.is_string() || v.get<std::string>().empty()) fail(key, "expected a non-empty string");
    return v.get<std::string>();
  }
  double number(const json& j, const std::string& key) const {
    if (!j.contains(key)) fail(key, "missing");
    const json& v = j.at(key);
    if (v.is_number()) return v.get<double>();
    if (v.is_string()) {
      const std::string s = v.get<std::string>();
      char* end = nullptr;
      const double d = std::strtod(s.c_str(), &end);
      if (!s.empty() && *end == '\0' && std::isfinite(d)) return d;
    }
    fail(key, "expected a number");
  }
  // A map of grid keys to values; values may be strings or numbers (ratio: 0.5).
  std::map<std::string, std::string> grid_map(const json& j, const std::string& key) const {
    if (!j.contains(key)) fail(key, "missing");
    const json& m = j.at(key);
    if (!m.is_object() || m.empty()) fail(key, "expected a map of grid keys (model, calibration, criterion, ratio, "
                                               "procedure, recovery) to values");
    std::map<std::string, std::string> out;
    const auto& keys = claim_grid_keys();
    for (const auto& [k, v] : m.items()) {
      if (std::find(keys.begin(), keys.end(), k) == keys.end())
        fail(key + "." + k, "not a grid key (model, calibration, criterion, ratio, procedure, recovery)");
      if (v.is_string() && !v.get<std::string>().empty()) {
        out[k] = v.get<std::string>();
      } else if (v.is_number()) {
        out[k] = v.dump();
      } else {
        fail(key + "." + k, "expected a value");
      }
    }
    return out;
  }
};

}  // namespace

const std::vector<std::string>& claim_grid_keys() {
  static const std::vector<std::string> k = {"model", "calibration", "criterion", "ratio", "procedure", "recovery"};
  return k;
}

nlohmann::json claim_to_json(const ClaimSpec& c) {
  json j = {{"paper", c.paper}, {"claim", c.claim}, {"kind", to_string(c.kind)}};
  if (c.kind == ClaimKind::kNotMeasured) {
    j["reason"] = c.reason;
    return j;
  }
  j["metric"] = c.metric;
  j["select"] = c.select;
  if (c.kind == ClaimKind::kRank) {
    j["among"] = c.among;
    j["within"] = c.within;
  }
  if (c.kind == ClaimKind::kBetter) j["versus"] = c.versus;
  if (c.kind == ClaimKind::kRetains) j["at_least"] = c.at_least;
  return j;
}

ClaimSpec claim_from_json(const json& j, const std::string& source, const std::string& field) {
  const Reader r{source, field};
  if (!j.is_object()) r.fail("", "expected a map (paper, claim, kind, ...)");
  for (const auto& [k, v] : j.items())
    if (!kKeys.count(k)) r.fail(k, "unknown key (paper, claim, kind, metric, select, among, within, versus, at_least, reason)");
  ClaimSpec c;
  c.paper = r.str(j, "paper");
  c.claim = r.str(j, "claim");
  const std::string kind = r.str(j, "kind");
  const auto known = parse_enum_word(kClaimKindWords, kind);
  if (!known) r.fail("kind", not_a_word_of(kClaimKindWords, kind));
  c.kind = *known;
  // Keys of another kind are refused: a claim that reads as checked must be checked.
  auto only_for = [&](const std::string& key, ClaimKind only) {
    if (j.contains(key) && c.kind != only)
      r.fail(key, std::string("only for kind ") + to_string(only) + " (this claim is " + to_string(c.kind) + ")");
  };
  only_for("among", ClaimKind::kRank);
  only_for("within", ClaimKind::kRank);
  only_for("versus", ClaimKind::kBetter);
  only_for("at_least", ClaimKind::kRetains);
  only_for("reason", ClaimKind::kNotMeasured);
  if (c.kind == ClaimKind::kNotMeasured) {
    for (const char* k : {"metric", "select"})
      if (j.contains(k)) r.fail(k, "a not_measured claim is not evaluated (give only paper, claim, reason)");
    c.reason = r.str(j, "reason");
    return c;
  }
  c.metric = r.str(j, "metric");
  c.select = r.grid_map(j, "select");
  if (c.kind == ClaimKind::kRank) {
    c.among = r.str(j, "among");
    if (!c.select.count(c.among)) r.fail("among", "\"" + c.among + "\" must be one of the select keys (the point's own value)");
    if (j.contains("within")) {
      const double w = r.number(j, "within");
      if (!(w >= 1 && w <= 1e6) || w != std::floor(w)) r.fail("within", "must be a whole number >= 1");
      c.within = int64_t(w);
    }
  } else if (c.kind == ClaimKind::kBetter) {
    c.versus = r.grid_map(j, "versus");
    for (const auto& [k, v] : c.versus)
      if (c.select.count(k) && c.select.at(k) == v) r.fail("versus." + k, "the same as select." + k + ": nothing to compare");
  } else {
    c.at_least = r.number(j, "at_least");
    if (!(c.at_least > 0 && c.at_least <= 100)) r.fail("at_least", "must be a fraction > 0 (0.9 = 90% of the unpruned model)");
  }
  return c;
}

}  // namespace moelab::results
