// Entry points of the CUDA plugin (libmoelab_cuda.so). Loading it pulls in
// libtorch_cuda, whose static initialisers register CUDA with ATen.
#include <c10/cuda/CUDACachingAllocator.h>

#include <cstdint>

#include "cluster/nccl_communicator.h"

extern "C" moelab::cluster::Communicator* moelab_make_nccl_communicator(
    std::shared_ptr<moelab::cluster::Communicator>* mpi) {
  return new moelab::cluster::NcclCommunicator(*mpi);
}

// Peak bytes the caching allocator handed out on `device` since the process began
// (what a device memory budget is compared with; the cache's reserve is not counted).
extern "C" int64_t moelab_cuda_peak_allocated(int device) {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
  return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
}

// Returns the cached, unused blocks to the driver (a freed layer's weights).
extern "C" void moelab_cuda_empty_cache() { c10::cuda::CUDACachingAllocator::emptyCache(); }
