// Safetensors files: a memory-mapped reader that validates the whole header before
// any tensor is touched, and an atomic writer.
//
// Format (https://github.com/huggingface/safetensors, README "Format"):
//   [u64 little-endian N][N bytes of JSON header][data]
//   header: {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
//            "__metadata__": {"k": "v"}}  offsets are relative to the start of data.
//
// Every check below names the file and the tensor: a truncated file, a header length
// past the end, offsets out of range or overlapping, a byte size that does not match
// dtype x shape all throw InputError before any allocation.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace moelab::hf {

struct TensorInfo {
  std::string name;
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets relative to the data section
};

class SafetensorsFile {
 public:
  // Maps `path` and validates its header. Throws InputError on any problem.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }

  // A CPU tensor backed by the mapping (copy-on-write: in-place edits never reach
  // the file); it keeps the mapping alive. Copied if the data is misaligned.
  at::Tensor tensor(const std::string& name) const;
  // Drops the resident pages of `name`'s data (whole pages only) once it has been
  // copied elsewhere, so that loading a model does not hold the file and the copy in
  // memory at once. Tensors still viewing those pages read them again from the file.
  void release(const std::string& name) const;
  // Asks the kernel to read `name`'s data into the page cache ahead of use
  // (MADV_WILLNEED: asynchronous readahead; nothing becomes resident in this process
  // until the tensor is read).
  void prefetch(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  uint64_t data_start_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
  std::weak_ptr<SafetensorsFile> self_;
};

// Writes tensors (any device and layout; stored contiguous, converted to `dtype` when
// given) to `path` through a temporary file and a rename.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {},
                       std::optional<at::ScalarType> dtype = std::nullopt);

// One tensor of a streamed write: its header entry up front, its data produced only
// when its turn comes (so that tensors too large to hold together are written one at
// a time). produce() must return `shape` in any dtype (converted to `dtype`).
struct TensorSource {
  std::string name;
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  std::function<at::Tensor()> produce;
};

// As write_safetensors, from sources: at most one produced tensor is held at a time.
void write_safetensors_streamed(const std::string& path, const std::vector<TensorSource>& tensors,
                                const std::map<std::string, std::string>& metadata = {});

// "F32" <-> at::kFloat, etc. Throws InputError(file, ...) for unknown dtype strings.
at::ScalarType dtype_from_safetensors(const std::string& s, const std::string& file, const std::string& tensor);
std::string dtype_to_safetensors(at::ScalarType t);

}  // namespace moelab::hf
