#include "core/hf/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/common/atomic_output.h"
#include "core/common/error.h"

namespace moelab::hf {
namespace {

// Headers of real checkpoints are a few MB at most; the reference implementation
// refuses anything over 100 MB, and so do we (a tiny file cannot make us allocate).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DtypeName {
  const char* name;
  at::ScalarType type;
};
constexpr DtypeName kDtypes[] = {
    {"F64", at::kDouble}, {"F32", at::kFloat},  {"F16", at::kHalf},   {"BF16", at::kBFloat16},
    {"I64", at::kLong},   {"I32", at::kInt},    {"I16", at::kShort},  {"I8", at::kChar},
    {"U8", at::kByte},    {"BOOL", at::kBool},
};

// a*b with overflow detection.
bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

}  // namespace

at::ScalarType dtype_from_safetensors(const std::string& s, const std::string& file, const std::string& tensor) {
  for (const auto& d : kDtypes)
    if (s == d.name) return d.type;
  throw InputError(file, "tensor \"" + tensor + "\": unsupported dtype \"" + s + "\"");
}

std::string dtype_to_safetensors(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (t == d.type) return d.name;
  throw std::invalid_argument(std::string("safetensors cannot store dtype ") + c10::toString(t));
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->self_ = f;
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw InputError(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw InputError(path, std::string("cannot stat: ") + std::strerror(errno));
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    throw InputError(path, "truncated safetensors file: " + std::to_string(file_size) +
                               " bytes, less than the 8-byte header length");
  }
  // MAP_PRIVATE + PROT_WRITE: copy-on-write, so tensors built on the mapping can be
  // edited in place without touching the file.
  void* map = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) throw InputError(path, std::string("cannot mmap: ") + std::strerror(errno));
  f->map_ = map;
  f->map_size_ = file_size;

  const auto* bytes = static_cast<const uint8_t*>(map);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];  // little-endian u64
  if (n > kMaxHeaderBytes)
    throw InputError(path, "header length " + std::to_string(n) + " is over the 100 MB limit (corrupt file?)");
  if (8 + n > file_size)
    throw InputError(path, "header length " + std::to_string(n) + " runs past the end of the file (" +
                               std::to_string(file_size) + " bytes): truncated or corrupt");
  f->data_start_ = 8 + n;
  const uint64_t data_size = file_size - f->data_start_;

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(reinterpret_cast<const char*>(bytes + 8), reinterpret_cast<const char*>(bytes + 8 + n));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) throw InputError(path, "header is not a JSON object");

  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw InputError(path, "__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m)
        if (m.value().is_string()) f->metadata_[m.key()] = m.value().get<std::string>();
      continue;
    }
    auto bad = [&](const std::string& what) { return InputError(path, "tensor \"" + name + "\": " + what); };
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      throw bad("entry must have dtype, shape and data_offsets");
    if (!v["dtype"].is_string()) throw bad("dtype is not a string");
    TensorInfo info;
    info.name = name;
    info.dtype = dtype_from_safetensors(v["dtype"].get<std::string>(), path, name);
    if (!v["shape"].is_array()) throw bad("shape is not an array");
    uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) throw bad("shape entries must be non-negative integers");
      uint64_t dim = d.get<uint64_t>();
      if (mul_overflows(numel, dim, &numel)) throw bad("shape overflows");
      info.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw bad("data_offsets must be [begin, end]");
    info.begin = off[0].get<uint64_t>();
    info.end = off[1].get<uint64_t>();
    if (info.begin > info.end) throw bad("data_offsets begin > end");
    if (info.end > data_size)
      throw bad("data ends at byte " + std::to_string(info.end) + " but the data section has only " +
                std::to_string(data_size) + " bytes: truncated file");
    uint64_t nbytes = 0;
    if (mul_overflows(numel, at::elementSize(info.dtype), &nbytes) || nbytes != info.end - info.begin)
      throw bad("byte size " + std::to_string(info.end - info.begin) + " does not match dtype and shape (" +
                std::to_string(nbytes) + " bytes expected)");
    ranges.emplace_back(info.begin, info.end);
    f->tensors_.emplace(name, std::move(info));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second && ranges[i].first != ranges[i].second)
      throw InputError(path, "tensor data ranges overlap (corrupt header)");
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw InputError(path_, "no tensor named \"" + name + "\"");
  const TensorInfo& info = it->second;
  char* data = static_cast<char*>(map_) + data_start_ + info.begin;
  auto opts = at::TensorOptions().dtype(info.dtype).device(at::kCPU);
  if (info.end == info.begin) return at::empty(info.shape, opts);
  if (reinterpret_cast<uintptr_t>(data) % at::elementSize(info.dtype) != 0) {
    // Misaligned data (legal in the format): copy into an aligned buffer.
    at::Tensor out = at::empty(info.shape, opts);
    std::memcpy(out.data_ptr(), data, info.end - info.begin);
    return out;
  }
  auto keep_alive = self_.lock();
  return at::from_blob(data, info.shape, [keep_alive](void*) {}, opts);
}

void SafetensorsFile::release(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) return;
  const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t base = reinterpret_cast<uintptr_t>(map_) + data_start_;
  const uintptr_t begin = (base + it->second.begin + page - 1) / page * page;
  const uintptr_t end = (base + it->second.end) / page * page;
  // Private mapping, pages never written: dropping them loses nothing.
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

void SafetensorsFile::prefetch(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) return;
  const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t base = reinterpret_cast<uintptr_t>(map_) + data_start_;
  const uintptr_t begin = (base + it->second.begin) / page * page;
  const uintptr_t end = base + it->second.end;
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_WILLNEED);
}

void write_safetensors_streamed(const std::string& path, const std::vector<TensorSource>& tensors,
                                const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    uint64_t numel = 1;
    for (int64_t d : t.shape) numel *= uint64_t(d);
    const uint64_t nbytes = numel * at::elementSize(t.dtype);
    header[t.name] = {{"dtype", dtype_to_safetensors(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string json = header.dump();
  // Pad the header with spaces so that the data section starts 8-byte aligned.
  while ((json.size() % 8) != 0) json.push_back(' ');
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t((uint64_t(json.size()) >> (8 * i)) & 0xff);
  AtomicFile out(path);
  out.write(len, 8);
  out.write(json.data(), json.size());
  for (const auto& t : tensors) {
    at::Tensor c = t.produce().detach().to(at::kCPU, t.dtype).contiguous();
    TORCH_CHECK(c.sizes() == at::IntArrayRef(t.shape), "write_safetensors_streamed: ", t.name,
                " was produced with another shape than declared");
    out.write(c.data_ptr(), c.numel() * c.element_size());
  }
  out.commit();
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata, std::optional<at::ScalarType> dtype) {
  // Streamed one tensor at a time: at most one converted copy in memory.
  std::vector<TensorSource> sources;
  sources.reserve(tensors.size());
  for (const auto& [name, t] : tensors)
    sources.push_back({name, dtype.value_or(t.scalar_type()), t.sizes().vec(), [&t = t] { return t; }});
  write_safetensors_streamed(path, sources, metadata);
}

}  // namespace moelab::hf
