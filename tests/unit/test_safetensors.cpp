// Safetensors reader/writer: round trip, and every corruption named in the file.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "hf/safetensors.h"

namespace fs = std::filesystem;
using moelab::InputError;
using moelab::hf::SafetensorsFile;

namespace {

fs::path tmp_path(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("moelab_st_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d / name;
}

void write_raw(const fs::path& p, const std::string& header, const std::string& data, int64_t claimed_len = -1) {
  std::ofstream o(p, std::ios::binary);
  uint64_t n = claimed_len >= 0 ? uint64_t(claimed_len) : header.size();
  for (int i = 0; i < 8; ++i) o.put(char((n >> (8 * i)) & 0xff));
  o << header << data;
}

// Expects InputError whose message starts with the file path and contains `needle`.
void expect_error(const fs::path& p, const std::string& needle) {
  try {
    SafetensorsFile::open(p.string());
    FAIL() << "no error for " << p;
  } catch (const InputError& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.rfind(p.string(), 0), 0u) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "error must be one line: " << msg;
  }
}

}  // namespace

TEST(Safetensors, RoundTripPreservesValuesDtypesAndShapes) {
  auto p = tmp_path("rt.safetensors");
  at::Tensor a = at::randn({3, 5});
  at::Tensor b = at::arange(7, at::kLong);
  at::Tensor c = at::randn({2, 2}).to(at::kBFloat16);
  moelab::hf::write_safetensors(p.string(), {{"a", a}, {"b", b}, {"c.x", c}}, {{"format", "pt"}});
  auto f = SafetensorsFile::open(p.string());
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_TRUE(at::equal(f->tensor("a"), a));
  EXPECT_TRUE(at::equal(f->tensor("b"), b));
  EXPECT_EQ(f->tensor("c.x").scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(f->tensor("c.x"), c));
  // Copy-on-write mapping: editing a loaded tensor never changes the file.
  f->tensor("a").zero_();
  EXPECT_TRUE(at::equal(SafetensorsFile::open(p.string())->tensor("a"), a));
}

TEST(Safetensors, FileShorterThanLengthPrefixIsRejected) {
  auto p = tmp_path("short.safetensors");
  std::ofstream(p, std::ios::binary) << "abc";
  expect_error(p, "truncated");
}

TEST(Safetensors, HeaderLengthPastEndOfFileIsRejected) {
  auto p = tmp_path("hdr.safetensors");
  write_raw(p, "{}", "", 4096);
  expect_error(p, "past the end");
}

TEST(Safetensors, HugeHeaderLengthIsRejectedBeforeAllocation) {
  auto p = tmp_path("huge.safetensors");
  write_raw(p, "{}", "", int64_t(1) << 60);
  expect_error(p, "100 MB");
}

TEST(Safetensors, TruncatedDataIsRejected) {
  auto p = tmp_path("trunc.safetensors");
  write_raw(p, R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, '\0'));
  expect_error(p, "truncated");
}

TEST(Safetensors, ByteSizeMismatchingShapeIsRejected) {
  auto p = tmp_path("mismatch.safetensors");
  write_raw(p, R"({"w":{"dtype":"F32","shape":[5],"data_offsets":[0,16]}})", std::string(16, '\0'));
  expect_error(p, "does not match");
}

TEST(Safetensors, ShapeOverflowIsRejected) {
  auto p = tmp_path("overflow.safetensors");
  write_raw(p, R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}})",
            std::string(16, '\0'));
  expect_error(p, "overflow");
}

TEST(Safetensors, OverlappingRangesAreRejected) {
  auto p = tmp_path("overlap.safetensors");
  write_raw(p,
            R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
            std::string(16, '\0'));
  expect_error(p, "overlap");
}

TEST(Safetensors, UnknownDtypeAndBadJsonAreRejected) {
  auto p = tmp_path("dtype.safetensors");
  write_raw(p, R"({"w":{"dtype":"F99","shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0'));
  expect_error(p, "F99");
  auto q = tmp_path("json.safetensors");
  write_raw(q, "{not json", "");
  expect_error(q, "JSON");
}
