#include "cluster/nccl_communicator.h"

#include <ATen/cuda/CUDAContext.h>
#include <cuda_runtime.h>

#include <chrono>
#include <cstdlib>
#include <thread>


namespace moelab::cluster {
namespace {

ncclDataType_t nccl_type_of(at::ScalarType t) {
  switch (t) {
    case at::kDouble: return ncclFloat64;
    case at::kFloat: return ncclFloat32;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kLong: return ncclInt64;
    case at::kInt: return ncclInt32;
    case at::kByte: return ncclUint8;
    default: throw std::invalid_argument(std::string("NCCL: unsupported dtype ") + c10::toString(t));
  }
}

int64_t row_elems(const at::Tensor& t) {
  int64_t n = 1;
  for (int64_t d = 1; d < t.dim(); ++d) n *= t.size(d);
  return n;
}

}  // namespace

NcclCommunicator::NcclCommunicator(std::shared_ptr<Communicator> mpi) : mpi_(std::move(mpi)) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
    mpi_->abort("the NCCL backend needs a CUDA device, and none is visible");
  const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  device_ = (local ? std::atoi(local) : mpi_->rank()) % count;
  cudaSetDevice(device_);
  if (const char* t = std::getenv("MOELAB_COMM_TIMEOUT_S")) timeout_s_ = std::atof(t);
  ncclUniqueId id;
  if (mpi_->rank() == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
  at::Tensor id_bytes = at::from_blob(&id, {int64_t(sizeof(id))}, at::kByte);
  mpi_->broadcast(id_bytes, 0);
  check(ncclCommInitRank(&comm_, mpi_->size(), id, mpi_->rank()), "ncclCommInitRank");
}

NcclCommunicator::~NcclCommunicator() {
  if (comm_) ncclCommDestroy(comm_);
}

void NcclCommunicator::check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) abort(std::string(what) + ": " + ncclGetErrorString(r));
}

void NcclCommunicator::wait(const char* what) {
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    cudaError_t q = cudaStreamQuery(stream);
    if (q == cudaSuccess) return;
    if (q != cudaErrorNotReady) abort(std::string(what) + ": " + cudaGetErrorString(q));
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(comm_, &async);
    if (async != ncclSuccess) abort(std::string(what) + ": " + ncclGetErrorString(async));
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout_s_)
      abort(std::string(what) + " did not complete within " + std::to_string(int(timeout_s_)) + " s");
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

// CPU tensors (statistics, counts, metadata) go over the MPI communicator NCCL was
// bootstrapped on; GPU tensors over NCCL.
void NcclCommunicator::all_reduce_sum(at::Tensor& t) {
  if (!t.is_cuda()) return mpi_->all_reduce_sum(t);
  TORCH_CHECK(t.is_cuda() && t.is_contiguous(), "NCCL all_reduce_sum: contiguous CUDA tensor expected");
  check(ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type_of(t.scalar_type()), ncclSum, comm_,
                      at::cuda::getCurrentCUDAStream()),
        "ncclAllReduce");
  wait("all_reduce_sum");
}

at::Tensor NcclCommunicator::all_gather_rows(const at::Tensor& t_in) {
  if (!t_in.is_cuda()) return mpi_->all_gather_rows(t_in);
  at::Tensor t = t_in.contiguous();
  at::Tensor n = at::tensor({t.size(0)}, at::kLong);
  at::Tensor counts = mpi_->all_gather_rows(n);
  std::vector<int64_t> c(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + size());
  std::vector<int64_t> send(size(), t.size(0));
  // Every rank sends its rows to every rank: an all-to-all with repeated payload.
  at::Tensor rep = at::cat(std::vector<at::Tensor>(size(), t), 0);
  return all_to_all_rows(rep, send, c);
}

at::Tensor NcclCommunicator::all_to_all_rows(const at::Tensor& send_in, const std::vector<int64_t>& send_rows,
                                             const std::vector<int64_t>& recv_rows) {
  if (!send_in.is_cuda()) return mpi_->all_to_all_rows(send_in, send_rows, recv_rows);
  at::Tensor send = send_in.contiguous();
  const int64_t row = row_elems(send);
  int64_t total = 0;
  for (int64_t r : recv_rows) total += r;
  std::vector<int64_t> shape = send.sizes().vec();
  shape[0] = total;
  at::Tensor out = at::empty(shape, send.options());
  const ncclDataType_t type = nccl_type_of(send.scalar_type());
  const size_t esz = send.element_size();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  check(ncclGroupStart(), "ncclGroupStart");
  int64_t so = 0, ro = 0;
  for (int peer = 0; peer < size(); ++peer) {
    if (send_rows[peer] > 0)
      check(ncclSend(static_cast<char*>(send.data_ptr()) + so * row * esz, send_rows[peer] * row, type, peer, comm_,
                     stream),
            "ncclSend");
    if (recv_rows[peer] > 0)
      check(ncclRecv(static_cast<char*>(out.data_ptr()) + ro * row * esz, recv_rows[peer] * row, type, peer, comm_,
                     stream),
            "ncclRecv");
    so += send_rows[peer];
    ro += recv_rows[peer];
  }
  check(ncclGroupEnd(), "ncclGroupEnd");
  wait("all_to_all_rows");
  return out;
}

void NcclCommunicator::broadcast(at::Tensor& t, int root) {
  if (!t.is_cuda()) return mpi_->broadcast(t, root);
  TORCH_CHECK(t.is_cuda() && t.is_contiguous(), "NCCL broadcast: contiguous CUDA tensor expected");
  check(ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type_of(t.scalar_type()), root, comm_,
                      at::cuda::getCurrentCUDAStream()),
        "ncclBroadcast");
  wait("broadcast");
}

void NcclCommunicator::abort(const std::string& why) {
  if (comm_) ncclCommAbort(comm_);
  comm_ = nullptr;
  mpi_->abort(why);
}

}  // namespace moelab::cluster
