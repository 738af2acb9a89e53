#include "runner/jobs/layerwise/layer_states.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/common/error.h"

namespace moelab::jobs {

LayerStates::LayerStates(std::vector<std::vector<int64_t>> shapes, at::ScalarType dtype, bool in_memory,
                         const std::string& scratch_dir)
    : shapes_(std::move(shapes)), dtype_(dtype), in_memory_(in_memory), scratch_dir_(scratch_dir) {
  offsets_.push_back(0);
  for (const auto& s : shapes_) {
    int64_t n = int64_t(at::elementSize(dtype_));
    for (int64_t d : s) n *= d;
    offsets_.push_back(offsets_.back() + n);
  }
  slots_.resize(shapes_.size());
  if (in_memory_) return;
  std::string name = scratch_dir_ + "/.moelab-layerwise-XXXXXX";
  fd_ = ::mkstemp(name.data());
  if (fd_ < 0) throw InputError(scratch_dir_, std::string("cannot create a scratch file: ") + std::strerror(errno));
  ::unlink(name.c_str());  // nameless from now on: the system deletes it when we close it or die
}

LayerStates::~LayerStates() {
  if (fd_ >= 0) ::close(fd_);
}

void LayerStates::put(size_t slot, const at::Tensor& h) {
  TORCH_CHECK(h.sizes() == at::IntArrayRef(shapes_.at(slot)) && h.scalar_type() == dtype_,
              "LayerStates::put: wrong shape or dtype");
  if (in_memory_) {
    slots_[slot] = h.cpu();
    return;
  }
  at::Tensor x = h.cpu().contiguous();
  const char* p = static_cast<const char*>(x.data_ptr());
  int64_t done = 0, n = offsets_[slot + 1] - offsets_[slot];
  while (done < n) {
    ssize_t w = ::pwrite(fd_, p + done, size_t(n - done), off_t(offsets_[slot] + done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) throw InputError(scratch_dir_, std::string("cannot write the scratch file: ") + std::strerror(errno));
    done += w;
  }
}

at::Tensor LayerStates::get(size_t slot) const {
  if (in_memory_) return slots_.at(slot);
  at::Tensor x = at::empty(shapes_.at(slot), at::TensorOptions().dtype(dtype_));
  char* p = static_cast<char*>(x.data_ptr());
  int64_t done = 0, n = offsets_[slot + 1] - offsets_[slot];
  while (done < n) {
    ssize_t r = ::pread(fd_, p + done, size_t(n - done), off_t(offsets_[slot] + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) throw InputError(scratch_dir_, std::string("cannot read the scratch file: ") + std::strerror(errno));
    done += r;
  }
  return x;
}

}  // namespace moelab::jobs
