// The MPI engine: collectives on CPU tensors through Open MPI, for ranks started by mpirun.
//
// All MPI traffic of a communicator runs on its own communication thread, which takes the issued
// collectives in order from a queue and runs MPI's blocking collectives. So a bucket's all-reduce
// makes progress while the main thread and its OpenMP team compute the rest of the backward pass;
// MPI's non-blocking collectives, by contrast, move only inside MPI calls, which the computing
// thread does not make. MPI is initialised once per process with MPI_THREAD_MULTIPLE (the main
// thread and the communication threads both call it) and finalised at exit.
//
// Every MPI call is checked (MPI_ERRORS_RETURN on a duplicate of MPI_COMM_WORLD): a failure is a
// tg::Error naming the rank, the op, the tensor and MPI's message, rethrown by Work::wait(). A
// collective still unfinished after timeout() prints what it was and ends the job (MPI_Abort), so a
// dead or diverging rank never leaves the others hanging.
#pragma once
#include <memory>

#include "dist/communicator.h"

namespace tg::dist {

// False when this build found no MPI (no mpicxx at build time): constructing an MpiCommunicator
// then throws saying so.
bool built_with_mpi();

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator();  // collective: every rank constructs its communicators in the same order
  ~MpiCommunicator() override;

  int rank() const override;
  int world_size() const override;
  std::string engine() const override { return "MPI"; }
  DeviceType device_type() const override { return DeviceType::CPU; }

  Work all_reduce_async(Tensor& tensor, ReduceOp op, const std::string& label = "") override;
  Work broadcast_async(Tensor& tensor, int root, const std::string& label = "") override;
  Work reduce_scatter_async(const Tensor& input, Tensor& output, ReduceOp op, const std::string& label = "") override;
  Work all_gather_async(const Tensor& input, Tensor& output, const std::string& label = "") override;
  Work barrier_async() override;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tg::dist
