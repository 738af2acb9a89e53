// GoogleTest main for tests run under `mpirun -np P`: every rank runs every test;
// only rank 0 prints; the exit status is nonzero on every rank if any rank failed.
#include <gtest/gtest.h>

#include "cluster/communicator.h"
#include "core/common/log.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto comm = moelab::cluster::world("mpi");
  moelab::log::init(comm->rank(), comm->size(), "warn");
  if (comm->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS() != 0;
  at::Tensor any = at::tensor({int64_t(failed)}, at::kLong);
  comm->all_reduce_sum(any);
  return any.item<int64_t>() > 0 ? 1 : 0;
}
