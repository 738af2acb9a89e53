#include "criteria/catalog.h"

#include <algorithm>
#include <cctype>
#include <regex>

#include "core/common/error.h"
#include "criteria/family.h"
#include "results/stat_groups.h"

namespace moelab::criteria {
namespace stat = results::stat;

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

std::optional<std::string> pattern_name_family(const std::string& name) {
  auto m = parse_family_member(name);
  if (!m) return std::nullopt;
  return m->name();
}

std::optional<std::string> pattern_name_aimer_per_matrix(const std::string& name) {
  static const std::regex kName(R"(^aimer-(gate|up|down|mean)$)", std::regex::icase);
  std::smatch m;
  if (!std::regex_match(name, m, kName)) return std::nullopt;
  return "AIMER-" + lower(m[1].str());
}

const std::vector<CriterionInfo>& criterion_catalog() {
  static const std::vector<CriterionInfo> kCatalog = {
#define MOELAB_CRITERION(x, name, ...) {name, {__VA_ARGS__}},
#define MOELAB_CRITERION_PATTERN(x, syntax, ...)
#include "criteria/criteria_list.h"
#undef MOELAB_CRITERION
#undef MOELAB_CRITERION_PATTERN
  };
  return kCatalog;
}

const std::vector<PatternInfo>& pattern_catalog() {
  static const std::vector<PatternInfo> kPatterns = {
#define MOELAB_CRITERION(x, name, ...)
#define MOELAB_CRITERION_PATTERN(x, syntax, ...) {syntax, {__VA_ARGS__}, &pattern_name_##x},
#include "criteria/criteria_list.h"
#undef MOELAB_CRITERION
#undef MOELAB_CRITERION_PATTERN
  };
  return kPatterns;
}

CriterionInfo find_criterion(const std::string& name) {
  for (const auto& p : pattern_catalog())
    if (auto n = p.name_of(name)) return {*n, p.needs};
  const std::string want = lower(name);
  std::string best;
  size_t best_d = SIZE_MAX;
  for (const auto& c : criterion_catalog()) {
    if (lower(c.name) == want) return c;
    size_t d = edit_distance(lower(c.name), want);
    if (d < best_d) {
      best_d = d;
      best = c.name;
    }
  }
  std::string msg = "unknown criterion \"" + name + "\"";
  for (const auto& p : pattern_catalog()) {  // "AIMER-left": the pattern it almost is
    const std::string prefix = lower(p.syntax.substr(0, p.syntax.find('<')));
    if (!prefix.empty() && want.rfind(prefix, 0) == 0) {
      best = p.syntax;
      best_d = 0;
    }
  }
  if (!best.empty() && best_d <= std::max<size_t>(2, want.size() / 3)) msg += " (did you mean \"" + best + "\"?)";
  msg += "; `moelab score --list` lists them (and the patterns, e.g. Family-a1-p1-b1-out)";
  throw InputError("criterion", msg);
}

std::set<std::string> stat_groups_needed(const std::vector<std::string>& names) {
  std::set<std::string> groups;
  std::vector<CriterionInfo> list;
  if (names.empty()) list = criterion_catalog();
  for (const auto& n : names) list.push_back(find_criterion(n));
  using Default = results::StatGroup::Default;
  for (const auto& c : list)
    for (const auto& need : c.needs) {
      if (need == kNeedsWeights || need == kNeedsSecondCheckpoint) continue;
      const results::StatGroup* g = results::find_stat_group(need);
      if (names.empty() && g && g->by_default == Default::kOnRequest) continue;
      groups.insert(need);
    }
  if (names.empty())  // the default set: also what results/stat_groups.cpp collects always
    for (const auto& g : results::stat_groups())
      if (g.by_default == Default::kAlways) groups.insert(g.name);
  return groups;
}

}  // namespace moelab::criteria
