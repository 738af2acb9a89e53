#include "cluster/mpi_communicator.h"

#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "core/common/error.h"
#include "core/common/log.h"

namespace moelab::cluster {
namespace {

bool g_we_initialised_mpi = false;

MPI_Datatype mpi_type_of(at::ScalarType t) {
  switch (t) {
    case at::kDouble: return MPI_DOUBLE;
    case at::kFloat: return MPI_FLOAT;
    case at::kLong: return MPI_INT64_T;
    case at::kInt: return MPI_INT32_T;
    default: throw std::invalid_argument(std::string("all_reduce_sum: unsupported dtype ") + c10::toString(t));
  }
}

// A contiguous datatype of one row (all trailing dimensions): counts stay small
// integers even for multi-GB exchanges.
struct RowType {
  MPI_Datatype type = MPI_DATATYPE_NULL;
  explicit RowType(int64_t row_bytes) {
    MPI_Type_contiguous(static_cast<int>(row_bytes), MPI_BYTE, &type);
    MPI_Type_commit(&type);
  }
  ~RowType() { MPI_Type_free(&type); }
};

int64_t row_bytes_of(const at::Tensor& t) {
  int64_t n = t.element_size();
  for (int64_t d = 1; d < t.dim(); ++d) n *= t.size(d);
  return std::max<int64_t>(n, 1);
}

std::vector<int> to_int(const std::vector<int64_t>& v, const char* what) {
  std::vector<int> out;
  for (int64_t x : v) {
    if (x < 0 || x > INT32_MAX) throw std::invalid_argument(std::string(what) + ": row count out of range");
    out.push_back(static_cast<int>(x));
  }
  return out;
}

std::vector<int> displacements(const std::vector<int>& counts) {
  std::vector<int> d(counts.size(), 0);
  for (size_t i = 1; i < counts.size(); ++i) d[i] = d[i - 1] + counts[i - 1];
  return d;
}

}  // namespace

MpiCommunicator::MpiCommunicator() {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (!initialised) {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    g_we_initialised_mpi = true;
  }
  MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
  // Errors come back as codes (and end in abort()) instead of MPI's own exit.
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  if (const char* t = std::getenv("MOELAB_COMM_TIMEOUT_S")) timeout_s_ = std::atof(t);
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  MPI_Comm_free(&comm_);
  if (g_we_initialised_mpi) MPI_Finalize();
}

void MpiCommunicator::wait(MPI_Request& req, const char* what) {
  const auto start = std::chrono::steady_clock::now();
  int done = 0;
  for (int spins = 0;; ++spins) {
    int rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) abort(std::string(what) + " failed (MPI error " + std::to_string(rc) + ")");
    if (done) return;
    // Spin briefly, then sleep: oversubscribed ranks must leave the core to the
    // rank that still computes.
    if (spins > 100) std::this_thread::sleep_for(std::chrono::microseconds(spins > 10000 ? 1000 : 50));
    else std::this_thread::yield();
    if ((spins & 255) == 0) {
      double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (waited > timeout_s_)
        abort(std::string(what) + " did not complete within " + std::to_string(int(timeout_s_)) +
              " s (another rank failed or hangs; MOELAB_COMM_TIMEOUT_S sets the limit)");
    }
  }
}

void MpiCommunicator::all_reduce_sum(at::Tensor& t_inout) {
  if (!t_inout.device().is_cpu() || !t_inout.is_contiguous()) {
    at::Tensor staged = t_inout.to(at::kCPU).contiguous();
    all_reduce_sum(staged);
    t_inout.copy_(staged);
    return;
  }
  at::Tensor& t = t_inout;
  MPI_Request req;
  MPI_Iallreduce(MPI_IN_PLACE, t.data_ptr(), static_cast<int>(t.numel()), mpi_type_of(t.scalar_type()), MPI_SUM,
                 comm_, &req);
  wait(req, "all_reduce_sum");
}

at::Tensor MpiCommunicator::all_gather_rows(const at::Tensor& t_in) {
  if (!t_in.device().is_cpu()) return all_gather_rows(t_in.to(at::kCPU)).to(t_in.device());
  at::Tensor t = t_in.contiguous();
  int64_t n = t.dim() == 0 ? 1 : t.size(0);
  at::Tensor counts = at::empty({size_}, at::kLong);
  MPI_Request req;
  MPI_Iallgather(&n, 1, MPI_INT64_T, counts.data_ptr<int64_t>(), 1, MPI_INT64_T, comm_, &req);
  wait(req, "all_gather_rows (counts)");
  std::vector<int64_t> c(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + size_);
  std::vector<int> rc = to_int(c, "all_gather_rows");
  int64_t total = 0;
  for (int64_t x : c) total += x;
  std::vector<int64_t> shape = t.sizes().vec();
  if (shape.empty()) shape = {1};
  shape[0] = total;
  at::Tensor out = at::empty(shape, t.options());
  RowType row(row_bytes_of(t));
  MPI_Iallgatherv(t.data_ptr(), static_cast<int>(n), row.type, out.data_ptr(), rc.data(), displacements(rc).data(),
                  row.type, comm_, &req);
  wait(req, "all_gather_rows");
  return out;
}

at::Tensor MpiCommunicator::all_to_all_rows(const at::Tensor& send_in, const std::vector<int64_t>& send_rows,
                                            const std::vector<int64_t>& recv_rows) {
  TORCH_CHECK(int(send_rows.size()) == size_ && int(recv_rows.size()) == size_, "all_to_all_rows: one count per rank");
  if (!send_in.device().is_cpu())
    return all_to_all_rows(send_in.to(at::kCPU), send_rows, recv_rows).to(send_in.device());
  at::Tensor send = send_in.contiguous();
  std::vector<int> sc = to_int(send_rows, "all_to_all_rows"), rc = to_int(recv_rows, "all_to_all_rows");
  int64_t total = 0;
  for (int64_t x : recv_rows) total += x;
  std::vector<int64_t> shape = send.sizes().vec();
  shape[0] = total;
  at::Tensor out = at::empty(shape, send.options());
  RowType row(row_bytes_of(send));
  MPI_Request req;
  MPI_Ialltoallv(send.data_ptr(), sc.data(), displacements(sc).data(), row.type, out.data_ptr(), rc.data(),
                 displacements(rc).data(), row.type, comm_, &req);
  wait(req, "all_to_all_rows");
  return out;
}

void MpiCommunicator::broadcast(at::Tensor& t_inout, int root) {
  if (!t_inout.device().is_cpu() || !t_inout.is_contiguous()) {
    at::Tensor staged = t_inout.to(at::kCPU).contiguous();
    broadcast(staged, root);
    t_inout.copy_(staged);
    return;
  }
  at::Tensor& t = t_inout;
  MPI_Request req;
  MPI_Ibcast(t.data_ptr(), static_cast<int>(t.numel() * t.element_size()), MPI_BYTE, root, comm_, &req);
  wait(req, "broadcast");
}

void MpiCommunicator::barrier() {
  MPI_Request req;
  MPI_Ibarrier(comm_, &req);
  wait(req, "barrier");
}

void MpiCommunicator::abort(const std::string& why) {
  spdlog::error("rank {} of {}: {}; aborting all ranks", rank_, size_, why);
  spdlog::default_logger()->flush();
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 3);
  std::_Exit(3);
}

}  // namespace moelab::cluster
