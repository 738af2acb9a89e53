// The NCCL backend on CUDA tensors, bootstrapped over MPI (rank 0's ncclUniqueId is
// broadcast over MPI; each rank uses GPU local_rank % device_count). Counts and
// barriers go over MPI; tensor traffic over NCCL on the current CUDA stream. A
// collective that does not finish within the timeout aborts the NCCL communicator
// and the job. Lives in the CUDA plugin (built when the CUDA toolkit and the torch
// wheel's NCCL are found).
#pragma once

#include <nccl.h>

#include <memory>

#include "cluster/communicator.h"

namespace moelab::cluster {

class NcclCommunicator : public Communicator {
 public:
  explicit NcclCommunicator(std::shared_ptr<Communicator> mpi);
  ~NcclCommunicator() override;

  int rank() const override { return mpi_->rank(); }
  int size() const override { return mpi_->size(); }
  std::string backend() const override { return "nccl"; }
  void all_reduce_sum(at::Tensor& t) override;
  at::Tensor all_gather_rows(const at::Tensor& t) override;
  at::Tensor all_to_all_rows(const at::Tensor& send, const std::vector<int64_t>& send_rows,
                             const std::vector<int64_t>& recv_rows) override;
  void broadcast(at::Tensor& t, int root) override;
  void barrier() override { mpi_->barrier(); }
  [[noreturn]] void abort(const std::string& why) override;

  int device() const { return device_; }

 private:
  void check(ncclResult_t r, const char* what);
  void wait(const char* what);  // synchronises the stream with a deadline
  std::shared_ptr<Communicator> mpi_;  // the MPI communicator: bootstrap, counts, barriers
  ncclComm_t comm_ = nullptr;
  int device_ = 0;
  double timeout_s_ = 600;
};

}  // namespace moelab::cluster
