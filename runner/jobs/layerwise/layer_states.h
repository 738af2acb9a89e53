// The hidden states of the calibration batches between two decoder layers (moelab
// calibrate --layerwise): one [B, T, D] tensor per batch of this rank, kept in memory
// or, when they do not fit the memory budget, in a scratch file. Layer l reads batch
// b's states, runs, and writes its output over them (same shape), so one copy of the
// states is all that is ever held.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace moelab::jobs {

class LayerStates {
 public:
  // shapes: [B, T, D] per slot; dtype: of every slot. in_memory false: a scratch file
  // in scratch_dir, unlinked as soon as it is created (it never outlives the
  // process, crash included). Throws InputError(scratch_dir, ...) if it cannot be made.
  LayerStates(std::vector<std::vector<int64_t>> shapes, at::ScalarType dtype, bool in_memory,
              const std::string& scratch_dir);
  ~LayerStates();
  LayerStates(const LayerStates&) = delete;
  LayerStates& operator=(const LayerStates&) = delete;

  // h: slot's shape and dtype, any device (copied to the CPU).
  void put(size_t slot, const at::Tensor& h);
  // The slot's states (CPU). In memory: the stored tensor itself.
  at::Tensor get(size_t slot) const;

  bool in_memory() const { return in_memory_; }
  // Bytes of all slots.
  int64_t bytes() const { return offsets_.back(); }

 private:
  std::vector<std::vector<int64_t>> shapes_;
  at::ScalarType dtype_;
  bool in_memory_;
  std::string scratch_dir_;
  std::vector<at::Tensor> slots_;   // in memory
  std::vector<int64_t> offsets_;    // slot -> byte offset in the file; back() = total
  int fd_ = -1;
};

}  // namespace moelab::jobs
