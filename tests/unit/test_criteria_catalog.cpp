// The torch-free criteria catalog (criteria/catalog.h, read by sweep specs, job graphs and
// the planner) against the criteria themselves (criteria/registry.h): each criterion says of
// itself what its line in criteria_list.h says, and names resolve the same way in both.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/common/error.h"
#include "criteria/catalog.h"
#include "criteria/registry.h"

namespace moelab {
namespace {

TEST(CriteriaCatalog, EveryCriterionHasItsCatalogNameAndNeedsInTheSameOrder) {
  const auto all = criteria::all_criteria();
  const auto& catalog = criteria::criterion_catalog();
  ASSERT_EQ(all.size(), catalog.size());
  ASSERT_GE(catalog.size(), size_t(20));
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i]->name(), catalog[i].name);
    EXPECT_EQ(all[i]->needs(), catalog[i].needs) << catalog[i].name;
  }
}

TEST(CriteriaCatalog, PatternInstancesResolveToTheCriterionTheRegistryBuilds) {
  const auto patterns = criteria::criterion_patterns();
  const auto& infos = criteria::pattern_catalog();
  ASSERT_EQ(patterns.size(), infos.size());
  for (size_t i = 0; i < infos.size(); ++i) EXPECT_EQ(patterns[i].syntax, infos[i].syntax);
  for (const std::string name : {"Family-a1-p1-b1-out", "family-a0.5-p2-b0-act", "AIMER-gate", "aimer-MEAN",
                                 "ean", "routernormchange", "Random", "EASY-EP"}) {
    const auto c = criteria::make_criterion(name);
    const criteria::CriterionInfo info = criteria::find_criterion(name);
    EXPECT_EQ(c->name(), info.name) << name;
    EXPECT_EQ(c->needs(), info.needs) << name;
  }
}

TEST(CriteriaCatalog, UnknownNamesGetTheSameSuggestionFromBoth) {
  for (const std::string name : {"EWNN", "AIMER-left", "Famly-a1"}) {
    std::string from_catalog, from_registry;
    try {
      criteria::find_criterion(name);
    } catch (const InputError& e) {
      from_catalog = e.what();
    }
    try {
      criteria::make_criterion(name);
    } catch (const InputError& e) {
      from_registry = e.what();
    }
    EXPECT_FALSE(from_catalog.empty()) << name;
    EXPECT_EQ(from_catalog, from_registry) << name;
  }
  try {
    criteria::find_criterion("EWNN");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean \"EWN\""), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace moelab
