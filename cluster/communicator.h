// Communicators: the collectives moelab needs, over CPU tensors (MPI) or GPU tensors
// (NCCL, bootstrapped over MPI). Injected where needed; no global state.
//
// Tensors may live on the CPU or (NCCL) the GPU: the NCCL communicator moves CPU
// tensors over MPI, so statistics can be reduced where they are kept.
//
// Contract for every collective: all ranks call it in the same order with
// compatible arguments. A collective that does not complete within the timeout
// (default 600 s, MOELAB_COMM_TIMEOUT_S) aborts the whole job with a message naming
// the rank and the collective; so does abort(). A rank that dies makes mpirun end
// the others.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

namespace moelab::cluster {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;

  // In place, elementwise sum over ranks. Any numeric dtype; float64 sums are exact
  // up to rounding of the order MPI chooses (use integer or float64 statistics).
  virtual void all_reduce_sum(at::Tensor& t) = 0;
  // Rank r's tensor of shape [n_r, ...] -> every rank gets cat([n_0..n_{P-1}], 0).
  // Trailing dimensions and dtype must agree; the n_r may differ.
  virtual at::Tensor all_gather_rows(const at::Tensor& t) = 0;
  // Rows send_rows[j] of `send` (consecutive, in rank order) go to rank j; returns
  // the rows received from each rank, in rank order (recv_rows[j] from rank j).
  virtual at::Tensor all_to_all_rows(const at::Tensor& send, const std::vector<int64_t>& send_rows,
                                     const std::vector<int64_t>& recv_rows) = 0;
  // In place: every rank gets root's tensor (same shape and dtype everywhere).
  virtual void broadcast(at::Tensor& t, int root) = 0;
  virtual void barrier() = 0;
  // Ends every rank of the job with a nonzero status after logging `why`.
  [[noreturn]] virtual void abort(const std::string& why) = 0;
};

// The communicator of this process: MPI when launched by mpirun (or another PMI
// launcher) and backend is "auto" or "mpi"; "nccl" needs CUDA and one GPU per rank.
// A process not launched by mpirun gets a single-rank communicator (no MPI at all).
std::shared_ptr<Communicator> world(const std::string& backend = "auto");

// True when this process was started by mpirun/srun with more than one rank.
bool launched_with_several_ranks();

// Runs fn; if it throws on any rank while others may wait in a collective, logs the
// error with the rank and aborts the whole job (exit status nonzero on every rank)
// instead of leaving the others hanging. Single-rank: rethrows.
void run_or_abort(Communicator& comm, const std::function<void()>& fn);

}  // namespace moelab::cluster
