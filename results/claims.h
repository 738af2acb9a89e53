// A paper's claim that a sweep checks: written in the sweep spec (key `claims`), saved
// in the results directory's plan.json, evaluated from the results by `moelab report`
// (report_claims.h) into the report's "papers' claims" table. One reader for both the
// spec and plan.json (claim_from_json), so the two cannot disagree.
//
// A claim is about the grid points of the sweep's evaluations that `select` matches
// (keys of claim_grid_keys(); criterion as labelled, "Min-EAN"; ratio as a fraction;
// recovery as its label, "kshot-3", or its kind, "kshot" / "finetune" / "sft"), one
// comparison per matched point, on one report metric:
//   rank     the point's value is among the best `within` of the points that differ
//            from it only in `among` (a select key): "Min-EAN is among the 3 best
//            criteria", "iterative is the best procedure"
//   better   the point's value is better than that of the point with the `versus` keys
//            replaced: "iterative beats one-shot", "3-shot restores what pruning lost"
//   retains  the point keeps at least `at_least` of the unpruned model's value (value /
//            unpruned for a higher-is-better metric, unpruned / value for perplexity)
//   not_measured  stated with `reason`, never evaluated (a claim the sweep cannot test)
// Format of the saved form: results/results_format.md ("Claims").
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/common/enum_words.h"

namespace moelab::results {

enum class ClaimKind { kRank, kBetter, kRetains, kNotMeasured };
inline constexpr EnumWords<ClaimKind, 4> kClaimKindWords = {{{ClaimKind::kRank, "rank"},
                                                             {ClaimKind::kBetter, "better"},
                                                             {ClaimKind::kRetains, "retains"},
                                                             {ClaimKind::kNotMeasured, "not_measured"}}};
inline const char* to_string(ClaimKind kind) { return enum_word(kClaimKindWords, kind); }

struct ClaimSpec {
  std::string paper;   // who claims it: "MC-Suite (arXiv 2504.05586)"
  std::string claim;   // the claim in words
  ClaimKind kind = ClaimKind::kRank;
  std::string metric;  // a report metric key: "ppl:<domain>", "acc:<task>", "avg", "lm:<task>"
  std::map<std::string, std::string> select;  // grid key -> value
  std::string among;                           // rank: the key the point is ranked over
  int64_t within = 1;                          // rank: best `within` (1 = the best)
  std::map<std::string, std::string> versus;  // better: keys replaced for the other point
  double at_least = 0;                         // retains: fraction of the unpruned model, > 0
  std::string reason;                          // not_measured: why
};

// model, calibration, criterion, ratio, procedure, recovery: the tags that place an
// evaluation in the grid.
const std::vector<std::string>& claim_grid_keys();

nlohmann::json claim_to_json(const ClaimSpec& c);
// InputError(source, "<field>.<key>: <problem>") for anything malformed. Numbers may be
// JSON numbers or strings holding one (the spec reader passes YAML scalars as strings).
ClaimSpec claim_from_json(const nlohmann::json& j, const std::string& source, const std::string& field);

}  // namespace moelab::results
