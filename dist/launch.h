// How this process was launched, and the communicator that goes with it.
//
//   mpirun -np N ./train ...            Open MPI's OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK}
//   RANK=.. WORLD_SIZE=.. LOCAL_RANK=.. torchrun-style variables (with MASTER_ADDR, MASTER_PORT)
//   ./train ...                         neither: one rank
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
};

// Reads the launcher's environment variables; throws naming the variable when one is malformed.
LaunchInfo detect_launch();

// The engine for tensors of `device` in a process launched as `launch`: one rank gets the
// single-process engine; several get MPI (CPU) or NCCL (CUDA). Throws in one line when this build
// lacks the engine ("this build has no MPI ...").
std::unique_ptr<Communicator> make_communicator(DeviceType device, const LaunchInfo& launch = detect_launch());

}  // namespace tg::dist
