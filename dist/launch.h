// How this process was launched, and the communicator that goes with it.
//
//   mpirun -np N ./train ...                 Open MPI sets OMPI_COMM_WORLD_{SIZE,RANK,LOCAL_RANK}
//   RANK=r WORLD_SIZE=N LOCAL_RANK=l         torchrun-style variables, with MASTER_ADDR and
//   MASTER_ADDR=host MASTER_PORT=p ./train   MASTER_PORT: rank 0 serves a rendezvous store there
//   ./train ...                              neither: one rank
//
// The two launches are told apart by OMPI_COMM_WORLD_SIZE: Open MPI sets it in every rank it
// starts, and torchrun never does. It is checked first, because mpirun passes the caller's
// environment on and a WORLD_SIZE exported in the shell must not turn an mpirun rank into a
// torchrun-style one. Without it, WORLD_SIZE makes a torchrun-style launch, and then RANK,
// LOCAL_RANK, and (for more than one rank) MASTER_ADDR and MASTER_PORT must all be set and valid.
//
// Which engine moves the gradients: NCCL for CUDA ranks (bootstrapped over MPI under mpirun, over
// the rendezvous store otherwise; dist/nccl_communicator.h), MPI for CPU ranks (under mpirun
// only: MPI forms its world through mpirun's daemons), the world-of-one engine for one rank.
#pragma once
#include <memory>
#include <string>

#include "dist/communicator.h"

namespace tg::dist {

struct LaunchInfo {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;     // the rank among those on this machine (picks the GPU)
  std::string launcher;   // "mpirun", "torchrun-style variables", or "" for one process
  std::string master_addr;  // torchrun-style: MASTER_ADDR, the host of rank 0's rendezvous store
  int master_port = 0;      // torchrun-style: MASTER_PORT, its TCP port (1..65535)
};

// Reads the launcher's environment variables; throws naming the variable, its value and what was
// expected when one is missing or malformed.
LaunchInfo detect_launch();

// The device of this rank: a CUDA run of several ranks puts each on cuda:<local rank> (one process
// per GPU, whatever index --device named); the CPU, or one rank, keeps `device`. Throws when the
// machine has fewer GPUs than its local ranks need.
Device rank_device(Device device, const LaunchInfo& launch = detect_launch());

// The engine for tensors on `device` in a process launched as `launch`: one rank gets the
// single-process engine; several get NCCL for CUDA (on cuda:<device.index>; the trainer passes
// the local rank) and MPI for the CPU. The one place the engine is chosen. Throws in one line when
// this build lacks the engine ("this build has no NCCL ...") or the launch cannot start it.
// `timeout` bounds the NCCL bootstrap (the rendezvous, the communicator's creation).
std::unique_ptr<Communicator> make_communicator(Device device, const LaunchInfo& launch = detect_launch(),
                                                std::chrono::seconds timeout = std::chrono::seconds(300));

}  // namespace tg::dist
