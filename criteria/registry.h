// All criteria by name, as scoring objects (their names and needs alone, without torch:
// catalog.h). Unknown names get a "did you mean" suggestion.
#pragma once

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "criteria/catalog.h"
#include "criteria/criterion.h"

namespace moelab::criteria {

// A parameterised criterion: one name pattern that stands for many criteria, e.g.
// Family-a1-p1-b1-out. One file defines `CriterionPattern pattern_x()` and the
// registry lists it with MOELAB_CRITERION_PATTERN(x, syntax, needs...) in criteria_list.h.
struct CriterionPattern {
  std::string syntax;               // "Family-a<A>-p<P>-b<B>-<act|out>"
  std::string needs;                // as `moelab score --list` shows it
  std::string description;          // one line
  std::vector<std::string> notes;   // extra lines for --list (e.g. named members)
  // The criterion a name stands for; null when the name is not of this pattern.
  // Throws InputError when it is, but its parameters are malformed.
  std::function<std::unique_ptr<Criterion>(const std::string& name)> parse;
};

std::vector<std::unique_ptr<Criterion>> all_criteria();
std::vector<CriterionPattern> criterion_patterns();
// Case-insensitive; a fixed name or an instance of a pattern. Throws InputError("criterion", ...) with a suggestion.
std::unique_ptr<Criterion> make_criterion(const std::string& name);

}  // namespace moelab::criteria
