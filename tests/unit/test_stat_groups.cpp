// The statistic-group table (results/stat_groups.h) against the criteria that read the
// groups and the sizes of the datasets the collector fills.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "core/common/error.h"
#include "criteria/registry.h"
#include "results/stat_groups.h"

namespace moelab {
namespace {

TEST(StatGroups, EveryGroupACriterionNeedsIsInTheTable) {
  for (const auto& c : criteria::all_criteria())
    for (const auto& need : c->needs()) {
      if (need == criteria::kNeedsWeights || need == criteria::kNeedsSecondCheckpoint) continue;
      EXPECT_NE(results::find_stat_group(need), nullptr) << c->name() << " needs \"" << need << "\"";
    }
  EXPECT_EQ(results::find_stat_group("no_such_group"), nullptr);
}

TEST(StatGroups, TheDefaultSetLeavesOutTheCostlyGroupsAndAddsTheCheapOnes) {
  const std::set<std::string> defaults = criteria::stat_groups_needed({});
  for (const auto& g : results::stat_groups()) {
    if (g.by_default == results::StatGroup::Default::kOnRequest) EXPECT_FALSE(defaults.count(g.name)) << g.name;
    if (g.by_default == results::StatGroup::Default::kAlways) EXPECT_TRUE(defaults.count(g.name)) << g.name;
  }
  EXPECT_FALSE(defaults.count(results::stat::kGradients));
  EXPECT_FALSE(defaults.count(results::stat::kNaee));
  EXPECT_TRUE(defaults.count(results::stat::kPowerSums));
  // Asked for by name, a costly group is collected.
  EXPECT_TRUE(criteria::stat_groups_needed({"EGN"}).count(results::stat::kGradients));
}

TEST(StatGroups, WholeModelGroupsAndRequirementsAreTheOnesCalibrateRefusesLayerByLayer) {
  std::set<std::string> whole;
  for (const auto& g : results::stat_groups())
    if (!g.whole_model_only.empty()) whole.insert(g.name);
  EXPECT_EQ(whole, (std::set<std::string>{results::stat::kActOutliers, results::stat::kGradients,
                                          results::stat::kNaee}));
  EXPECT_EQ(results::with_required_groups({results::stat::kActOutliers}),
            (std::set<std::string>{results::stat::kActOutliers, results::stat::kActMoments}));
  const results::StatGroup* first = results::first_whole_model_group({results::stat::kUsage, results::stat::kNaee});
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first->name, results::stat::kNaee);
  EXPECT_EQ(results::first_whole_model_group({results::stat::kUsage}), nullptr);
}

TEST(StatGroups, LayerBytesAreTheCollectedTensorsSizes) {
  const results::StatSizes s{8, 32, 64, 512};  // E, F, D, V
  auto bytes = [&](const std::string& name, bool in_file) {
    return results::find_stat_group(name)->layer_bytes(s, in_file);
  };
  EXPECT_EQ(bytes(results::stat::kUsage, false), 8 * 8 + 8 * 8);            // tokens_E int64, gate_sum_E f64
  EXPECT_EQ(bytes(results::stat::kCoactivation, false), 8 * 8 * 8);         // [E, E] int64
  EXPECT_EQ(bytes(results::stat::kTokenIds, false), 8 * 512);               // bool [E, V]
  EXPECT_EQ(bytes(results::stat::kTokenIds, true), 8 * 64);                 // bits [E, V / 8]
  EXPECT_EQ(bytes(results::stat::kActMoments, false), 2 * 8 * 32 * 8);      // two [E, F] f64
  EXPECT_EQ(bytes(results::stat::kActOutliers, false), 8 * 8 + 2 * 8 * 32 * 8);  // + thresholds
  EXPECT_EQ(bytes(results::stat::kActOutliers, true), 8 * 8);
  EXPECT_EQ(bytes(results::stat::kOutMoments, false), 2 * 8 * 64 * 8);      // two [E, D] f64
  EXPECT_EQ(bytes(results::stat::kGateRatios, false), 8 * results::kGateRatioBins);
}

TEST(StatGroups, TheLayerByLayerDefaultSetDropsTheWholeModelGroupsAndUnknownNamesAreRefused) {
  const std::set<std::string> all(results::all_stat_groups().begin(), results::all_stat_groups().end());
  const std::set<std::string> kept = results::without_whole_model_groups(all);
  EXPECT_EQ(results::first_whole_model_group(kept), nullptr);
  for (const auto& g : results::stat_groups())
    EXPECT_EQ(kept.count(g.name) == 1, g.whole_model_only.empty()) << g.name;
  EXPECT_NO_THROW(results::check_stat_group_name(results::stat::kUsage, "--collect"));
  try {
    results::check_stat_group_name("usag", "--collect");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown statistic group \"usag\" (usage,"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace moelab
