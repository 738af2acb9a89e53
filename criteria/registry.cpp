#include "criteria/registry.h"

#include <algorithm>
#include <cctype>

#include "common/error.h"
#include "results/stat_groups.h"

namespace moelab::criteria {

#define MOELAB_CRITERION(x) std::unique_ptr<Criterion> make_##x();
#define MOELAB_CRITERION_PATTERN(x) CriterionPattern pattern_##x();
#include "criteria/criteria_list.h"
#undef MOELAB_CRITERION
#undef MOELAB_CRITERION_PATTERN

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

std::vector<std::unique_ptr<Criterion>> all_criteria() {
  std::vector<std::unique_ptr<Criterion>> out;
#define MOELAB_CRITERION(x) out.push_back(make_##x());
#define MOELAB_CRITERION_PATTERN(x)
#include "criteria/criteria_list.h"
#undef MOELAB_CRITERION
#undef MOELAB_CRITERION_PATTERN
  return out;
}

std::vector<CriterionPattern> criterion_patterns() {
  std::vector<CriterionPattern> out;
#define MOELAB_CRITERION(x)
#define MOELAB_CRITERION_PATTERN(x) out.push_back(pattern_##x());
#include "criteria/criteria_list.h"
#undef MOELAB_CRITERION
#undef MOELAB_CRITERION_PATTERN
  return out;
}

std::unique_ptr<Criterion> make_criterion(const std::string& name) {
  for (const auto& p : criterion_patterns())
    if (auto c = p.parse(name)) return c;
  const std::string want = lower(name);
  std::string best;
  size_t best_d = SIZE_MAX;
  for (auto& c : all_criteria()) {
    if (lower(c->name()) == want) return std::move(c);
    size_t d = edit_distance(lower(c->name()), want);
    if (d < best_d) {
      best_d = d;
      best = c->name();
    }
  }
  std::string msg = "unknown criterion \"" + name + "\"";
  for (const auto& p : criterion_patterns()) {  // "AIMER-left": the pattern it almost is
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
  std::vector<std::unique_ptr<Criterion>> list;
  if (names.empty()) list = all_criteria();
  for (const auto& n : names) list.push_back(make_criterion(n));
  using Default = results::StatGroup::Default;
  for (const auto& c : list)
    for (const auto& need : c->needs()) {
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
