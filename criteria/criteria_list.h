// Every criterion, one line each: MOELAB_CRITERION(x, "Name", needs...) names the factory
// `std::unique_ptr<Criterion> make_x()` defined in criteria/x.cpp, the criterion's name and
// what it needs (statistic groups, results::stat::k*, or kNeedsWeights /
// kNeedsSecondCheckpoint); MOELAB_CRITERION_PATTERN(x, "syntax", needs...) a parameterised
// one, `CriterionPattern pattern_x()`, whose names `std::optional<std::string>
// pattern_name_x(name)` (torch-free) recognises. catalog.cpp reads the names and needs
// without torch (sweep specs, job graphs, the planner); registry.cpp the factories; a unit
// test checks that each criterion says of itself what its line says.

// Inference-based (calibration statistics)
MOELAB_CRITERION(euf, "EUF", stat::kUsage)
MOELAB_CRITERION(soft_frequency, "SoftFrequency", stat::kUsage)
MOELAB_CRITERION(ean, "EAN", stat::kActNorms)
MOELAB_CRITERION(reap, "REAP", stat::kUsage, stat::kOutNorms)
MOELAB_CRITERION(ecc, "ECC", stat::kUsage, stat::kCoactivation)
MOELAB_CRITERION(evtc, "EVTC", stat::kTokenIds)
MOELAB_CRITERION(ets, "ETS", stat::kTokenIds)
MOELAB_CRITERION(eas, "EAS", stat::kUsage, stat::kActMoments)
MOELAB_CRITERION(eae, "EAE", stat::kUsage, stat::kActMoments)
MOELAB_CRITERION(eao, "EAO", stat::kActOutliers)
MOELAB_CRITERION(man, "MAN", stat::kUsage, stat::kActNorms)
MOELAB_CRITERION(msan, "MSAN", stat::kUsage, stat::kActNorms)
MOELAB_CRITERION(mone, "MoNE", stat::kUsage, stat::kOutMoments)
MOELAB_CRITERION(mone_fluctuation, "MoNE-fluctuation", stat::kUsage, stat::kOutMoments)
MOELAB_CRITERION_PATTERN(family, "Family-a<A>-p<P>-b<B>-<act|out>", stat::kUsage, stat::kPowerSums)

// Gradient-based (calibration forward + backward)
MOELAB_CRITERION(egs, "EGS", stat::kGradients)
MOELAB_CRITERION(ege, "EGE", stat::kGradients)
MOELAB_CRITERION(ego, "EGO", stat::kGradients)
MOELAB_CRITERION(egn, "EGN", stat::kGradients)

// Weight-based (no data)
MOELAB_CRITERION(ews, "EWS", kNeedsWeights)
MOELAB_CRITERION(rwn, "RWN", kNeedsWeights)
MOELAB_CRITERION(wsr, "WSR", kNeedsWeights)
MOELAB_CRITERION(ewn, "EWN", kNeedsWeights)
MOELAB_CRITERION(aimer, "AIMER", kNeedsWeights)
MOELAB_CRITERION_PATTERN(aimer_per_matrix, "AIMER-<gate|up|down|mean>", kNeedsWeights)

// Other
MOELAB_CRITERION(easy_ep, "EASY-EP", stat::kHiddenChange)
MOELAB_CRITERION(naee, "NAEE", stat::kNaee)
MOELAB_CRITERION(router_norm_change, "RouterNormChange", kNeedsWeights, kNeedsSecondCheckpoint)
MOELAB_CRITERION(random_baseline, "Random")
