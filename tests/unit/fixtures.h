// Where the Python-built fixtures live ($MOELAB_FIXTURES, set by CTest).
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace moelab::test {

inline std::string fixtures_dir() {
  const char* d = std::getenv("MOELAB_FIXTURES");
  return d ? std::string(d) : std::string();
}

// Skips (with a reason) when the fixtures were not built, e.g. a unit run by hand.
#define MOELAB_REQUIRE_FIXTURES()                                                     \
  do {                                                                                \
    if (::moelab::test::fixtures_dir().empty()) GTEST_SKIP() << "MOELAB_FIXTURES unset"; \
  } while (0)

}  // namespace moelab::test
