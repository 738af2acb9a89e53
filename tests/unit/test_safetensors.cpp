// Safetensors reader/writer: round trip, and every corruption named in the file.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "core/common/error.h"
#include "core/hf/safetensors.h"

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

namespace {

// Fraction of the pages of [begin, end) of `p` that are in the page cache (mincore on a
// fresh mapping: it says what the kernel holds, not what this process touched).
double cached_fraction(const fs::path& p, size_t begin, size_t end) {
  const int fd = ::open(p.c_str(), O_RDONLY);
  const size_t size = fs::file_size(p);
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  const size_t page = size_t(::sysconf(_SC_PAGESIZE));
  const size_t first = begin / page, last = (end + page - 1) / page;
  std::vector<unsigned char> in((size + page - 1) / page);
  ::mincore(map, size, in.data());
  ::munmap(map, size);
  size_t n = 0;
  for (size_t i = first; i < last; ++i) n += in[i] & 1;
  return double(n) / double(last - first);
}

}  // namespace

TEST(Safetensors, PrefetchReadsOneTensorIntoThePageCache) {
  auto p = tmp_path("prefetch.safetensors");
  // a: 16 MiB, b: 4 MiB after it.
  moelab::hf::write_safetensors(p.string(), {{"a", at::randn({4096, 1024})}, {"b", at::randn({1024, 1024})}});
  {  // written back and evicted, so that the cache holds none of the file
    const int fd = ::open(p.c_str(), O_RDONLY);
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
  auto f = SafetensorsFile::open(p.string());
  const size_t b_end = fs::file_size(p), b_begin = b_end - 4 * 1024 * 1024;
  // a's second half: far from the header, whose reading made the kernel read ahead into a.
  const size_t a_tail = b_begin - 8 * 1024 * 1024;
  if (cached_fraction(p, b_begin, b_end) > 0.5) GTEST_SKIP() << "this file system keeps the file cached (tmpfs?)";
  f->prefetch("b");
  double b = 0;
  for (int i = 0; i < 200 && b < 0.99; ++i) {  // readahead is asynchronous: wait up to 2 s
    b = cached_fraction(p, b_begin, b_end);
    if (b < 0.99) ::usleep(10000);
  }
  EXPECT_GT(b, 0.99);
  EXPECT_LT(cached_fraction(p, a_tail, b_begin - 4096), 0.05);  // only b was asked for
  f->prefetch("no such tensor");  // nothing to do
}
