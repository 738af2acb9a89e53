// CUDA at run time. moelab's programs link only libtorch's CPU part; the first call
// that needs a GPU loads the CUDA plugin (libmoelab_cuda.so beside the binary),
// which brings libtorch_cuda (registering CUDA with ATen) and the NCCL backend.
#pragma once

#include <cstdint>
#include <memory>

#include "cluster/communicator.h"

namespace moelab::cluster {

// Loads the plugin once. False (with `why`) if the build has none or it fails to
// load; then at::hasCUDA() stays false. Call before the first at::hasCUDA().
bool enable_cuda(std::string* why = nullptr);

// The NCCL communicator over `mpi` (bootstrap and counts go over MPI). Throws
// InputError when the plugin or a GPU is missing.
std::shared_ptr<Communicator> make_nccl_communicator(std::shared_ptr<Communicator> mpi);

// The CUDA caching allocator's peak of allocated bytes on `device` (0 without the
// plugin), and a release of its unused cached blocks (no-op without the plugin).
int64_t cuda_peak_allocated_bytes(int device);
void cuda_empty_cache();

}  // namespace moelab::cluster
