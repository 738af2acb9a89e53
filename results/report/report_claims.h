// The report's "papers' claims" table: each claim of the sweep (results/claims.h)
// evaluated from the finished evaluations, never written by hand.
//
// A claim is checked at every grid point of the sweep's pruned evaluations that its
// `select` matches (over the keys it does not fix: each ratio, procedure, calibration
// set, ...); a point's value is the metric's mean over seeds, as in the result tables.
// Verdict: "holds" when every measured point passes, "does not hold" when none does,
// "holds at k of n settings" otherwise, "not measured" when no point has the numbers
// (and, for not_measured claims, the spec's reason).
#pragma once

#include "results/report/report_data.h"
#include "results/report/report_table.h"

namespace moelab::results::report {

// Rows: paper, claim, setting (metric and comparison), measured (one entry per point),
// verdict; no numeric columns. Empty table (no rows) when the sweep has no claims.
Table build_claims_table(const SweepResults& r);

}  // namespace moelab::results::report
