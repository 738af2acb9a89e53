#include "cluster/communicator.h"

#include <cstdlib>
#include <mutex>

#include "cluster/cuda_support.h"
#include "cluster/local_communicator.h"
#include "cluster/mpi_communicator.h"
#include "core/common/error.h"
#include "core/common/log.h"

namespace moelab::cluster {

void LocalCommunicator::abort(const std::string& why) {
  spdlog::error("{}; aborting", why);
  spdlog::default_logger()->flush();
  std::_Exit(3);
}

bool launched_with_several_ranks() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"})
    if (const char* v = std::getenv(var); v && std::atoi(v) > 1) return true;
  return false;
}

std::shared_ptr<Communicator> world(const std::string& backend) {
  static std::mutex mu;
  static std::shared_ptr<Communicator> mpi, local;
  std::lock_guard<std::mutex> lock(mu);
  const bool under_launcher = std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK");
  // `srun -n N` without an MPI plugin starts N unrelated copies, each rank 0 of 1, all
  // writing the same outputs: refuse instead of computing N times.
  if (const char* step_tasks = std::getenv("SLURM_STEP_NUM_TASKS");
      step_tasks && std::atoi(step_tasks) > 1 && !under_launcher)
    throw InputError("srun", std::string("started ") + step_tasks +
                                 " tasks that are not one MPI job: use srun --mpi=pmix (see srun --mpi=list) or mpirun");
  if (backend == "local" || (backend == "auto" && !under_launcher)) {
    if (!local) local = std::make_shared<LocalCommunicator>();
    return local;
  }
  if (backend == "auto" || backend == "mpi") {
    if (!mpi) mpi = std::make_shared<MpiCommunicator>();
    return mpi;
  }
  if (backend == "nccl") {
    if (!mpi) mpi = std::make_shared<MpiCommunicator>();
    return make_nccl_communicator(mpi);
  }
  throw InputError("--comm", "unknown backend \"" + backend + "\" (auto, local, mpi, nccl)");
}

void run_or_abort(Communicator& comm, const std::function<void()>& fn) {
  if (comm.size() == 1) {
    fn();
    return;
  }
  try {
    fn();
  } catch (const std::exception& e) {
    std::string msg = e.what();
    comm.abort(msg.substr(0, msg.find('\n')));
  }
}

}  // namespace moelab::cluster
