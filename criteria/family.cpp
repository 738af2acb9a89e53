#include "criteria/family.h"

#include <cstdio>

#include "core/common/error.h"
#include "criteria/registry.h"
#include "criteria/stats_access.h"

namespace moelab::criteria {
namespace {

const auto number = family_number;

std::string list(const std::vector<double>& xs) {
  std::string out;
  for (double x : xs) out += (out.empty() ? "" : ",") + number(x);
  return out;
}

class Family : public Criterion {
 public:
  explicit Family(FamilyMember m) : m_(m) {}
  std::string name() const override { return m_.name(); }
  std::string description() const override {
    return "N^-" + number(m_.b) + " * sum over routed tokens of g^" + number(m_.a) + " ||" +
           (m_.v == 0 ? "a_j" : "f_j") + "||^" + number(m_.p) + " (unified family, Liu et al. 2026)";
  }
  std::vector<std::string> needs() const override { return {results::stat::kUsage, results::stat::kPowerSums}; }
  at::Tensor score_layer(const ScoreInputs& in, int64_t moe_index, int64_t) const override {
    const auto& s = layer_stats(in, moe_index, results::stat::kPowerSums, name());
    const auto& x = in.stats->power_exponents;
    auto index_of = [&](double e, const char* what) {
      for (size_t i = 0; i < x.size(); ++i)
        if (x[i] == e) return int64_t(i);
      throw InputError("criterion " + name(),
                       std::string(what) + " = " + number(e) + " is not stored: the statistics hold sum g^a ||v||^p for a, p in {" +
                           list(x) + "}; collect others with: moelab calibrate MODEL --data FILE --power-exponents " +
                           list(x) + "," + number(e) + " --out STATS.h5");
    };
    const int64_t ia = index_of(m_.a, "a"), ip = index_of(m_.p, "p");
    return per_routed_token(s.power_sum_EVXX.select(1, m_.v).select(1, ia).select(1, ip), s.tokens_E, m_.b);
  }

 private:
  FamilyMember m_;
};

}  // namespace

CriterionPattern pattern_family() {
  CriterionPattern c;
  c.syntax = "Family-a<A>-p<P>-b<B>-<act|out>";
  c.needs = "usage,power_sums";
  c.description = "N^-B * sum over routed tokens of g^A ||v||^P, v = a_j (act) or f_j (out) (Liu et al. 2026)";
  for (const auto& [n, mem] : named_family_members()) c.notes.push_back(n + " = " + mem.name());
  c.parse = [](const std::string& name) -> std::unique_ptr<Criterion> {
    auto m = parse_family_member(name);
    if (!m) return nullptr;
    return std::make_unique<Family>(*m);
  };
  return c;
}

}  // namespace moelab::criteria
