// Every criterion, one line each: MOELAB_CRITERION(x) names the factory
// `std::unique_ptr<Criterion> make_x()` defined in criteria/x.cpp;
// MOELAB_CRITERION_PATTERN(x) a parameterised one, `CriterionPattern pattern_x()`.
// (Included twice by registry.cpp: once to declare, once to build the table.)

// Inference-based (calibration statistics)
MOELAB_CRITERION(euf)
MOELAB_CRITERION(soft_frequency)
MOELAB_CRITERION(ean)
MOELAB_CRITERION(reap)
MOELAB_CRITERION(ecc)
MOELAB_CRITERION(evtc)
MOELAB_CRITERION(ets)
MOELAB_CRITERION(eas)
MOELAB_CRITERION(eae)
MOELAB_CRITERION(eao)
MOELAB_CRITERION(man)
MOELAB_CRITERION(msan)
MOELAB_CRITERION(mone)
MOELAB_CRITERION(mone_fluctuation)
MOELAB_CRITERION_PATTERN(family)

// Gradient-based (calibration forward + backward)
MOELAB_CRITERION(egs)
MOELAB_CRITERION(ege)
MOELAB_CRITERION(ego)
MOELAB_CRITERION(egn)

// Weight-based (no data)
MOELAB_CRITERION(ews)
MOELAB_CRITERION(rwn)
MOELAB_CRITERION(wsr)
MOELAB_CRITERION(ewn)
MOELAB_CRITERION(aimer)
MOELAB_CRITERION_PATTERN(aimer_per_matrix)

// Other
MOELAB_CRITERION(easy_ep)
MOELAB_CRITERION(naee)
MOELAB_CRITERION(router_norm_change)
MOELAB_CRITERION(random_baseline)
