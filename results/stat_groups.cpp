#include "results/stat_groups.h"

#include "core/common/error.h"

namespace moelab::results {

const std::vector<StatGroup>& stat_groups() {
  using D = StatGroup::Default;
  static const std::vector<StatGroup> table = {
      // tokens_E int64 + gate_sum_E f64; always collected (every criterion normalises by it)
      {stat::kUsage, D::kWhenNeeded, "", "", [](const StatSizes& s, bool) { return 16 * s.E; }},
      {stat::kActNorms, D::kWhenNeeded, "", "", [](const StatSizes& s, bool) { return 16 * s.E; }},
      {stat::kOutNorms, D::kWhenNeeded, "", "", [](const StatSizes& s, bool) { return 16 * s.E; }},
      {stat::kCoactivation, D::kWhenNeeded, "", "", [](const StatSizes& s, bool) { return 8 * s.E * s.E; }},
      // bool [E, V] while collecting, packed to bits in the file
      {stat::kTokenIds, D::kWhenNeeded, "", "",
       [](const StatSizes& s, bool in_file) { return in_file ? s.E * ((s.V + 7) / 8) : s.E * s.V; }},
      {stat::kActMoments, D::kWhenNeeded, "", "", [](const StatSizes& s, bool) { return 16 * s.E * s.F; }},
      {stat::kHiddenChange, D::kWhenNeeded, "", "", [](const StatSizes& s, bool) { return 8 * s.E; }},
      // counts, and the lo/hi thresholds [E, F] f64 while collecting
      {stat::kActOutliers, D::kWhenNeeded, "needs a second whole-model pass with thresholds from the first",
       stat::kActMoments, [](const StatSizes& s, bool in_file) { return 8 * s.E + (in_file ? 0 : 16 * s.E * s.F); }},
      {stat::kGradients, D::kOnRequest, "needs a backward pass through the whole model", "",
       [](const StatSizes& s, bool) { return 16 * s.E + 8 * s.E * s.E + 16 * s.E * s.F; }},
      // at most --naee-budget (4096) subsets of E flags plus a loss each
      {stat::kNaee, D::kOnRequest, "re-runs the whole model per candidate subset", "",
       [](const StatSizes& s, bool) { return 4096 * (s.E + 8); }},
      {stat::kDenseOutputs, D::kWhenNeeded, "", "", [](const StatSizes& s, bool) { return 8 * s.E * s.D; }},
      {stat::kGateRatios, D::kWhenNeeded, "", "", [](const StatSizes&, bool) { return 8 * kGateRatioBins; }},
      // [E, 2, X, X] f64 with the default X = 3 exponents; every Family member scores from it
      {stat::kPowerSums, D::kAlways, "", "", [](const StatSizes& s, bool) { return 8 * s.E * 2 * 9; }},
      {stat::kOutMoments, D::kWhenNeeded, "", "", [](const StatSizes& s, bool) { return 16 * s.E * s.D; }},
      // E values a layer; prune --protect-super-experts reads it
      {stat::kOutMax, D::kAlways, "", "", [](const StatSizes& s, bool) { return 8 * s.E; }},
  };
  return table;
}

const StatGroup* find_stat_group(const std::string& name) {
  for (const auto& g : stat_groups())
    if (g.name == name) return &g;
  return nullptr;
}

const std::vector<std::string>& all_stat_groups() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& g : stat_groups()) n.push_back(g.name);
    return n;
  }();
  return names;
}

std::set<std::string> with_required_groups(std::set<std::string> groups) {
  for (const auto& g : stat_groups())
    if (groups.count(g.name) && !g.requires_group.empty()) groups.insert(g.requires_group);
  return groups;
}

const StatGroup* first_whole_model_group(const std::set<std::string>& groups) {
  for (const auto& g : stat_groups())
    if (groups.count(g.name) && !g.whole_model_only.empty()) return &g;
  return nullptr;
}

std::set<std::string> without_whole_model_groups(std::set<std::string> groups) {
  while (const StatGroup* g = first_whole_model_group(groups)) groups.erase(g->name);
  return groups;
}

void check_stat_group_name(const std::string& name, const std::string& option) {
  if (find_stat_group(name)) return;
  std::string known;
  for (const auto& g : all_stat_groups()) known += (known.empty() ? "" : ", ") + g;
  throw InputError(option, "unknown statistic group \"" + name + "\" (" + known + ")");
}

}  // namespace moelab::results
