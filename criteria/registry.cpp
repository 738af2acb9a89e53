#include "criteria/registry.h"

#include "core/common/error.h"

namespace moelab::criteria {

#define MOELAB_CRITERION(x, ...) std::unique_ptr<Criterion> make_##x();
#define MOELAB_CRITERION_PATTERN(x, ...) CriterionPattern pattern_##x();
#include "criteria/criteria_list.h"
#undef MOELAB_CRITERION
#undef MOELAB_CRITERION_PATTERN

namespace {

struct Factory {
  const char* name;
  std::unique_ptr<Criterion> (*make)();
};

const std::vector<Factory>& factories() {
  static const std::vector<Factory> kFactories = {
#define MOELAB_CRITERION(x, name, ...) {name, &make_##x},
#define MOELAB_CRITERION_PATTERN(x, ...)
#include "criteria/criteria_list.h"
#undef MOELAB_CRITERION
#undef MOELAB_CRITERION_PATTERN
  };
  return kFactories;
}

}  // namespace

std::vector<std::unique_ptr<Criterion>> all_criteria() {
  std::vector<std::unique_ptr<Criterion>> out;
  for (const auto& f : factories()) out.push_back(f.make());
  return out;
}

std::vector<CriterionPattern> criterion_patterns() {
  std::vector<CriterionPattern> out;
#define MOELAB_CRITERION(x, ...)
#define MOELAB_CRITERION_PATTERN(x, ...) out.push_back(pattern_##x());
#include "criteria/criteria_list.h"
#undef MOELAB_CRITERION
#undef MOELAB_CRITERION_PATTERN
  return out;
}

std::unique_ptr<Criterion> make_criterion(const std::string& name) {
  for (const auto& p : criterion_patterns())
    if (auto c = p.parse(name)) return c;
  const CriterionInfo info = find_criterion(name);  // the catalog's name, or its "did you mean"
  for (const auto& f : factories())
    if (info.name == f.name) return f.make();
  throw InputError("criterion", "\"" + name + "\" has no factory in criteria_list.h");
}

}  // namespace moelab::criteria
