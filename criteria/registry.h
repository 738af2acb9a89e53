// All criteria by name. Unknown names get a "did you mean" suggestion.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "criteria/criterion.h"

namespace moelab::criteria {

std::vector<std::unique_ptr<Criterion>> all_criteria();
// Case-insensitive. Throws InputError("criterion", ...) with a suggestion.
std::unique_ptr<Criterion> make_criterion(const std::string& name);

}  // namespace moelab::criteria
