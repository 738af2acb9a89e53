// The criteria table for the sweep-spec fuzz target: the real registry
// (criteria/registry.cpp: name lookup, "did you mean") over stand-in criteria that
// have the real names and the same kind of needs, but no scoring code. Linking the
// real criteria would compile ~25 libtorch-heavy files with clang for a parser that
// only asks a criterion for its name and its needs.
#include <regex>
#include <stdexcept>

#include "criteria/criterion.h"
#include "criteria/family.h"
#include "criteria/registry.h"

namespace moelab::criteria {
namespace {

class StubCriterion : public Criterion {
 public:
  StubCriterion(std::string name, std::vector<std::string> needs) : name_(std::move(name)), needs_(std::move(needs)) {}
  std::string name() const override { return name_; }
  std::string description() const override { return "fuzz stand-in"; }
  std::vector<std::string> needs() const override { return needs_; }
  at::Tensor score_layer(const ScoreInputs&, int64_t, int64_t) const override {
    throw std::logic_error("fuzz stand-in criteria do not score");
  }

 private:
  std::string name_;
  std::vector<std::string> needs_;
};

std::unique_ptr<Criterion> stub(const std::string& name, std::vector<std::string> needs) {
  return std::make_unique<StubCriterion>(name, std::move(needs));
}
const std::vector<std::string> kStats = {"usage"};
const std::vector<std::string> kGrads = {"gradients"};

}  // namespace

std::unique_ptr<Criterion> make_euf() { return stub("EUF", kStats); }
std::unique_ptr<Criterion> make_soft_frequency() { return stub("SoftFrequency", kStats); }
std::unique_ptr<Criterion> make_ean() { return stub("EAN", kStats); }
std::unique_ptr<Criterion> make_reap() { return stub("REAP", kStats); }
std::unique_ptr<Criterion> make_ecc() { return stub("ECC", kStats); }
std::unique_ptr<Criterion> make_evtc() { return stub("EVTC", kStats); }
std::unique_ptr<Criterion> make_ets() { return stub("ETS", kStats); }
std::unique_ptr<Criterion> make_eas() { return stub("EAS", kStats); }
std::unique_ptr<Criterion> make_eae() { return stub("EAE", kStats); }
std::unique_ptr<Criterion> make_eao() { return stub("EAO", kStats); }
std::unique_ptr<Criterion> make_egs() { return stub("EGS", kGrads); }
std::unique_ptr<Criterion> make_ege() { return stub("EGE", kGrads); }
std::unique_ptr<Criterion> make_ego() { return stub("EGO", kGrads); }
std::unique_ptr<Criterion> make_egn() { return stub("EGN", kGrads); }
std::unique_ptr<Criterion> make_ews() { return stub("EWS", {kNeedsWeights}); }
std::unique_ptr<Criterion> make_rwn() { return stub("RWN", {kNeedsWeights}); }
std::unique_ptr<Criterion> make_wsr() { return stub("WSR", {kNeedsWeights}); }
std::unique_ptr<Criterion> make_ewn() { return stub("EWN", {kNeedsWeights}); }
std::unique_ptr<Criterion> make_easy_ep() { return stub("EASY-EP", kStats); }
std::unique_ptr<Criterion> make_naee() { return stub("NAEE", {"naee"}); }
std::unique_ptr<Criterion> make_router_norm_change() {
  return stub("RouterNormChange", {kNeedsWeights, kNeedsSecondCheckpoint});
}
std::unique_ptr<Criterion> make_random_baseline() { return stub("Random", {}); }
std::unique_ptr<Criterion> make_man() { return stub("MAN", kStats); }
std::unique_ptr<Criterion> make_msan() { return stub("MSAN", kStats); }
std::unique_ptr<Criterion> make_mone() { return stub("MoNE", {"usage", "out_moments"}); }
std::unique_ptr<Criterion> make_mone_fluctuation() { return stub("MoNE-fluctuation", {"usage", "out_moments"}); }
std::unique_ptr<Criterion> make_aimer() { return stub("AIMER", {kNeedsWeights}); }

// The patterns: the family's real name parser (criteria/family_name.cpp), stand-in criteria.
CriterionPattern pattern_family() {
  CriterionPattern c;
  c.syntax = "Family-a<A>-p<P>-b<B>-<act|out>";
  c.parse = [](const std::string& name) -> std::unique_ptr<Criterion> {
    auto m = parse_family_member(name);
    return m ? stub(m->name(), {"usage", "power_sums"}) : nullptr;
  };
  return c;
}
CriterionPattern pattern_aimer_per_matrix() {
  CriterionPattern c;
  c.syntax = "AIMER-<gate|up|down|mean>";
  c.parse = [](const std::string& name) -> std::unique_ptr<Criterion> {
    static const std::regex kName(R"(^aimer-(gate|up|down|mean)$)", std::regex::icase);
    return std::regex_match(name, kName) ? stub("AIMER-" + name.substr(6), {kNeedsWeights}) : nullptr;
  };
  return c;
}

}  // namespace moelab::criteria
