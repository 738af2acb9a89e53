// One rank, no MPI: collectives are identities.
#pragma once

#include "cluster/communicator.h"

namespace moelab::cluster {

class LocalCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "local"; }
  void all_reduce_sum(at::Tensor&) override {}
  at::Tensor all_gather_rows(const at::Tensor& t) override { return t; }
  at::Tensor all_to_all_rows(const at::Tensor& send, const std::vector<int64_t>&,
                             const std::vector<int64_t>&) override {
    return send;
  }
  void broadcast(at::Tensor&, int) override {}
  void barrier() override {}
  [[noreturn]] void abort(const std::string& why) override;
};

}  // namespace moelab::cluster
