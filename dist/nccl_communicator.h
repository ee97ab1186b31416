// The NCCL engine: collectives on CUDA tensors, one rank per GPU.
//
// Bootstrap. NCCL's ranks find each other through a unique id that rank 0 makes and every rank
// must receive: under mpirun it is broadcast over MPI, in a torchrun-style launch it goes through
// the rendezvous store at MASTER_ADDR:MASTER_PORT (dist/rendezvous_store.h), which then stays up
// for the watchdog. The communicator is created non-blocking (ncclConfig_t blocking = 0), so that
// no NCCL call can hang the process: every call that answers ncclInProgress is polled to its end
// under the timeout.
//
// Streams. Collectives run on the communicator's own stream. Before each, an event recorded on the
// compute stream (cuda::stream()) makes the communication stream wait for the kernels that wrote
// the tensor; after it, an event recorded on the communication stream marks its end, and wait()
// makes the compute stream wait for that event, so kernels issued after wait() see the result.
// Each tensor is marked as used by the communication stream (cuda_record_stream), so freeing it
// while the collective runs does not hand its memory to new work before the collective is done.
//
// Watchdog. wait() polls the end event and NCCL's asynchronous error; when the collective has not
// finished within timeout() (--dist-timeout), or NCCL reports an error, it aborts the communicator
// (ncclCommAbort, which ends the kernels stuck on it) and throws a tg::Error naming the rank, the
// op, the tensor, how many collectives this rank had issued and, in a torchrun-style launch, what
// each peer reports through the store (dist/peer_report.h: the collective it is stuck in, or
// nothing when it is dead, stopped or not in a collective). Under mpirun each rank prints its own
// line and mpirun gathers them. The communicator is unusable after an abort.
//
// A build without CUDA or without nccl.h has the class, and constructing it throws saying so.
#pragma once
#include <chrono>
#include <memory>
#include <string>

#include "dist/communicator.h"
#include "dist/launch.h"

namespace tg::dist {

// False when this build has no NCCL engine; no_nccl_reason() then says why, in a few words
// ("this build has no NCCL (built without CUDA)").
bool built_with_nccl();
std::string no_nccl_reason();

class NcclCommunicator : public Communicator {
 public:
  // Collective over the ranks of `launch`: each calls it with its own GPU (`device`, cuda:local
  // rank for one process per GPU). `timeout` bounds the bootstrap and becomes timeout().
  NcclCommunicator(Device device, const LaunchInfo& launch, std::chrono::seconds timeout);
  ~NcclCommunicator() override;

  int rank() const override;
  int world_size() const override;
  std::string engine() const override { return "NCCL"; }
  DeviceType device_type() const override { return DeviceType::CUDA; }

  Work all_reduce_async(Tensor& tensor, ReduceOp op, const std::string& label = "") override;
  Work broadcast_async(Tensor& tensor, int root, const std::string& label = "") override;
  Work reduce_scatter_async(const Tensor& input, Tensor& output, ReduceOp op, const std::string& label = "") override;
  Work all_gather_async(const Tensor& input, Tensor& output, const std::string& label = "") override;
  Work barrier_async() override;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;  // shared with the Work handles, which may outlive the communicator
};

}  // namespace tg::dist
