// All criteria by name. Unknown names get a "did you mean" suggestion.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "criteria/criterion.h"

namespace moelab::criteria {

std::vector<std::unique_ptr<Criterion>> all_criteria();
// Case-insensitive. Throws InputError("criterion", ...) with a suggestion.
std::unique_ptr<Criterion> make_criterion(const std::string& name);

// The statistic groups (results::stat::k*) the named criteria need. No names: every
// criterion's, except the groups that cost more than one forward pass (gradients: a
// backward pass; naee: dense observation), which are collected only when named.
std::set<std::string> stat_groups_needed(const std::vector<std::string>& names);

}  // namespace moelab::criteria
