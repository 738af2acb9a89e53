// The names of the unified family's members (criteria/family.h), without torch: parsing,
// canonical names, the exponents a calibration must store, the named members. Shared by
// the criterion (family.cpp), `moelab calibrate` and the sweep-spec fuzz target.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <regex>

#include "core/common/error.h"
#include "criteria/family.h"

namespace moelab::criteria {

std::string family_number(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

std::string FamilyMember::name() const {
  std::string n = "Family-a" + family_number(a) + "-p" + family_number(p) + "-b" + family_number(b);
  if (p != 0) n += v == 0 ? "-act" : "-out";
  return n;
}

std::optional<FamilyMember> parse_family_member(const std::string& name) {
  static const std::regex kFamily(R"(^family-(.*)$)", std::regex::icase);
  std::smatch m;
  if (!std::regex_match(name, m, kFamily)) return std::nullopt;
  static const std::regex kParams(R"(^a([0-9.eE+-]+)-p([0-9.eE+-]+)-b([0-9.eE+-]+)(?:-(act|out))?$)", std::regex::icase);
  std::smatch pm;
  const std::string rest = m[1].str();
  const std::string usage = "\"" + name + "\" is not a family member: write Family-a<A>-p<P>-b<B>-<act|out>, e.g. "
                            "Family-a1-p1-b1-out (REAP) or Family-a0-p1-b1-act (MAN)";
  if (!std::regex_match(rest, pm, kParams)) throw InputError("criterion", usage);
  auto value = [&](const std::string& s, const char* what) {
    size_t used = 0;
    double d = 0;
    try {
      d = std::stod(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != s.size() || !std::isfinite(d)) throw InputError("criterion", usage + " (" + what + " = \"" + s + "\")");
    return d;
  };
  FamilyMember f;
  f.a = value(pm[1].str(), "a");
  f.p = value(pm[2].str(), "p");
  f.b = value(pm[3].str(), "b");
  if (f.a < 0 || f.p < 0) throw InputError("criterion", "\"" + name + "\": the exponents a and p must be >= 0");
  std::string v = pm[4].str();
  for (auto& ch : v) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  f.v = v == "out" ? 1 : 0;
  if (f.p == 0) f.v = 0;  // ||v||^0 = 1 for either vector
  return f;
}

std::vector<double> power_exponents_for(const std::vector<std::string>& criteria, std::vector<double> base) {
  for (const auto& name : criteria)
    if (auto m = parse_family_member(name))
      for (double e : {m->a, m->p})
        if (std::find(base.begin(), base.end(), e) == base.end()) base.push_back(e);
  return base;
}

const std::vector<std::pair<std::string, FamilyMember>>& named_family_members() {
  static const std::vector<std::pair<std::string, FamilyMember>> m = {
      {"EUF", {0, 0, 0, 0}},  {"SoftFrequency", {1, 0, 0, 0}}, {"EAN", {0, 1, 0, 0}},
      {"MAN", {0, 1, 1, 0}},  {"MSAN", {0, 2, 1, 0}},          {"REAP", {1, 1, 1, 1}},
  };
  return m;
}

}  // namespace moelab::criteria
