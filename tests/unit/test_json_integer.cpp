// Integers read from outside JSON: only JSON integers that fit int64_t are accepted;
// floats (even integral ones and huge ones, whose cast would be undefined), big
// unsigned values, strings and nulls are refused with the field named.
#include <gtest/gtest.h>

#include <limits>

#include "core/common/json_integer.h"

namespace {

using nlohmann::json;
using moelab::JsonIntegerError;

TEST(JsonInteger, AcceptsIntegersAcrossTheInt64Range) {
  EXPECT_EQ(moelab::json_integer(json::parse("7"), "f"), 7);
  EXPECT_EQ(moelab::json_integer(json::parse("-3"), "f"), -3);
  EXPECT_EQ(moelab::json_integer(json::parse("9223372036854775807"), "f"), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(moelab::json_integer(json::parse("-9223372036854775808"), "f"), std::numeric_limits<int64_t>::min());
}

TEST(JsonInteger, RefusesFloatsHugeUnsignedStringsAndNullNamingTheField) {
  for (const char* text : {"4.01111e+126", "2.0", "9223372036854775808", "\"3\"", "null", "[1]"}) {
    try {
      moelab::json_integer(json::parse(text), "layers.0.num_experts");
      FAIL() << text << " was accepted";
    } catch (const JsonIntegerError& e) {
      EXPECT_NE(std::string(e.what()).find("\"layers.0.num_experts\""), std::string::npos) << e.what();
    }
  }
}

TEST(JsonInteger, FallbackOnlyWhenTheKeyIsAbsentOrNull) {
  const json obj = json::parse(R"({"a": 5, "b": null, "c": 1e300})");
  EXPECT_EQ(moelab::json_integer_or(obj, "a", 1), 5);
  EXPECT_EQ(moelab::json_integer_or(obj, "b", 1), 1);
  EXPECT_EQ(moelab::json_integer_or(obj, "missing", 1), 1);
  EXPECT_THROW(moelab::json_integer_or(obj, "c", 1), JsonIntegerError);
}

TEST(JsonInteger, ListsAreCheckedElementByElement) {
  EXPECT_EQ(moelab::json_integer_list(json::parse("[0, 2, 5]"), "keep"), (std::vector<int64_t>{0, 2, 5}));
  EXPECT_THROW(moelab::json_integer_list(json::parse("[0, 1e40]"), "keep"), JsonIntegerError);
  EXPECT_THROW(moelab::json_integer_list(json::parse("{\"0\": 1}"), "keep"), JsonIntegerError);
}

}  // namespace
