// Entry points of the CUDA plugin (libmoelab_cuda.so). Loading it pulls in
// libtorch_cuda, whose static initialisers register CUDA with ATen.
#include "cluster/nccl_communicator.h"

extern "C" moelab::cluster::Communicator* moelab_make_nccl_communicator(
    std::shared_ptr<moelab::cluster::Communicator>* mpi) {
  return new moelab::cluster::NcclCommunicator(*mpi);
}
