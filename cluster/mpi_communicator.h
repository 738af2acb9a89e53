// The MPI backend (OpenMPI). Tensors on a GPU are staged through host memory (use
// the NCCL backend to keep them on the device). Every collective is non-blocking under
// the hood and polled with a deadline, so a rank that never arrives turns into a
// clear abort instead of a silent hang; the poll yields the CPU, which matters when
// ranks are oversubscribed on few cores.
#pragma once

#include <mpi.h>

#include "cluster/communicator.h"

namespace moelab::cluster {

class MpiCommunicator : public Communicator {
 public:
  // Initialises MPI (once per process) and duplicates MPI_COMM_WORLD.
  MpiCommunicator();
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }
  void all_reduce_sum(at::Tensor& t) override;
  at::Tensor all_gather_rows(const at::Tensor& t) override;
  at::Tensor all_to_all_rows(const at::Tensor& send, const std::vector<int64_t>& send_rows,
                             const std::vector<int64_t>& recv_rows) override;
  void broadcast(at::Tensor& t, int root) override;
  void barrier() override;
  [[noreturn]] void abort(const std::string& why) override;

  MPI_Comm handle() const { return comm_; }

 private:
  // Waits for `req` until the deadline; aborts the job on timeout.
  void wait(MPI_Request& req, const char* what);
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  double timeout_s_ = 600;
};

}  // namespace moelab::cluster
