// What the tree may ask of a criterion without scoring with it: its name and what it needs
// (criteria_list.h), case-insensitive lookup with a "did you mean", and the statistic groups
// a set of criteria needs. Torch-free: the sweep spec, the job graph and the planner read
// it, and so do the fuzz targets, without the criteria's scoring code (registry.h).
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

namespace moelab::criteria {

// What a criterion needs besides statistic groups (results::stat::k*).
inline const std::string kNeedsWeights = "weights";                     // the model's expert/router weights
inline const std::string kNeedsSecondCheckpoint = "second_checkpoint";  // e.g. fine-tuned vs pre-trained

struct CriterionInfo {
  std::string name;                // "EAN"; for a pattern, the instance's name ("Family-a1-p1-b1-out")
  std::vector<std::string> needs;  // statistic groups and/or kNeedsWeights / kNeedsSecondCheckpoint
};

struct PatternInfo {
  std::string syntax;              // "Family-a<A>-p<P>-b<B>-<act|out>"
  std::vector<std::string> needs;
  // The instance's canonical name; nullopt when `name` is not of this pattern; InputError
  // ("criterion", ...) when it is but its parameters are malformed.
  std::optional<std::string> (*name_of)(const std::string& name);
};

const std::vector<CriterionInfo>& criterion_catalog();  // the fixed names, in criteria_list.h order
const std::vector<PatternInfo>& pattern_catalog();

// Case-insensitive; a fixed name or an instance of a pattern. Throws InputError("criterion",
// ...) with a suggestion otherwise.
CriterionInfo find_criterion(const std::string& name);

// The statistic groups (results::stat::k*) the named criteria need. No names: every
// criterion's, except the groups that cost more than one forward pass (gradients: a
// backward pass; naee: dense observation), which are collected only when named, plus
// power_sums (every member of the Family pattern).
std::set<std::string> stat_groups_needed(const std::vector<std::string>& names);

// The names the patterns of criteria_list.h recognise (torch-free; the scoring classes
// live in family.cpp and aimer.cpp).
std::optional<std::string> pattern_name_family(const std::string& name);
std::optional<std::string> pattern_name_aimer_per_matrix(const std::string& name);

}  // namespace moelab::criteria
