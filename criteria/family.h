// The unified criteria family (Liu et al., "How to Score Experts for One-Shot MoE Expert
// Pruning", arXiv 2606.15716): many expert-importance criteria are one formula built
// from routing frequency, gate weighting and activation strength,
//
//   S_j = N_j^-b * sum over tokens x routed to j of g_j(x)^a * ||v_j(x)||_2^p,
//
// N_j the routed-token count, g_j the gate weight as the model applies it, v_j either
// the intermediate activation a_j (width F) or the expert output before gating f_j
// (width D). A member is named Family-a<A>-p<P>-b<B>-<act|out>, e.g. REAP is
// Family-a1-p1-b1-out; with p = 0 the vector does not matter and the name omits it.
// Scored from the `power_sums` statistics alone (results/calibration_stats.h), for any
// a and p among the calibrated exponents (default 0, 1, 2) and any b. An expert with
// N_j = 0 scores 0.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace moelab::criteria {

struct FamilyMember {
  double a = 0, p = 0, b = 0;
  int v = 0;  // 0: a_j (act), 1: f_j (out)
  std::string name() const;  // canonical, e.g. "Family-a1-p1-b1-out"
};

// An exponent as member names write it ("%g": 1, 0.5, 1e-05).
std::string family_number(double x);

// nullopt when `name` is not of the form Family-...; InputError("criterion", ...) when it
// is but a value is malformed (a or p negative, an unknown vector).
std::optional<FamilyMember> parse_family_member(const std::string& name);

// `base` plus the a and p of every Family member among `criteria` that base lacks (in
// that order): the exponents a calibration for these criteria must store.
std::vector<double> power_exponents_for(const std::vector<std::string>& criteria, std::vector<double> base);

// The named criteria that are points of the family, with their member: EUF, SoftFrequency,
// EAN, MAN, MSAN, REAP (each equal to its stand-alone criterion; tested).
const std::vector<std::pair<std::string, FamilyMember>>& named_family_members();

}  // namespace moelab::criteria
