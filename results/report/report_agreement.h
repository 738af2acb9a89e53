// The report's agreement tables: for each finished scoring job with >= 2 of the sweep's
// criteria and each ratio of the sweep, the overall top-r overlap of the experts each
// criterion (with its direction) would drop, pairwise (results/criteria_agreement.h, the
// same numbers `moelab score --agreement` prints).
#pragma once

#include <vector>

#include "results/report/report_table.h"

namespace moelab::results::report {

std::vector<Table> build_overlap_tables(const SweepResults& r);

}  // namespace moelab::results::report
