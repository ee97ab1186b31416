#include "dist/launch.h"

#include <cstdlib>

#include "dist/mpi_communicator.h"
#include "dist/single_process_communicator.h"

namespace tg::dist {

// The value of an integer environment variable, or `fallback` when it is unset.
static int env_int(const char* name, int fallback) {
  const char* text = std::getenv(name);
  if (!text || !*text) return fallback;
  char* end = nullptr;
  long value = std::strtol(text, &end, 10);
  if (*end != '\0' || value < 0 || value > 1000000)
    throw Error(std::string("environment variable ") + name + " is \"" + text + "\", expected a non-negative integer");
  return static_cast<int>(value);
}

LaunchInfo detect_launch() {
  LaunchInfo info;
  if (std::getenv("OMPI_COMM_WORLD_SIZE")) {
    info.launcher = "mpirun";
    info.world_size = env_int("OMPI_COMM_WORLD_SIZE", 1);
    info.rank = env_int("OMPI_COMM_WORLD_RANK", 0);
    info.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0);
  } else if (std::getenv("WORLD_SIZE")) {
    info.launcher = "torchrun-style variables";
    info.world_size = env_int("WORLD_SIZE", 1);
    info.rank = env_int("RANK", 0);
    info.local_rank = env_int("LOCAL_RANK", 0);
  }
  if (info.world_size < 1 || info.rank >= info.world_size)
    throw Error("launched by " + info.launcher + " as rank " + std::to_string(info.rank) + " of world size " +
                std::to_string(info.world_size) + ": the rank must be below the world size");
  return info;
}

std::unique_ptr<Communicator> make_communicator(DeviceType device, const LaunchInfo& launch) {
  if (launch.world_size == 1) return std::make_unique<SingleProcessCommunicator>(device);
  if (device == DeviceType::CUDA)
    throw Error("launched as " + std::to_string(launch.world_size) +
                " ranks on CUDA: this build has no NCCL engine for CUDA tensors yet; train several ranks on the CPU "
                "(--device cpu under mpirun)");
  if (launch.launcher != "mpirun")
    throw Error("launched as " + std::to_string(launch.world_size) + " CPU ranks by " + launch.launcher +
                ": the MPI engine starts under mpirun (mpirun -np " + std::to_string(launch.world_size) + " ...)");
  if (!built_with_mpi())
    throw Error("launched by mpirun as " + std::to_string(launch.world_size) +
                " ranks, but this build has no MPI (mpicxx was not found when it was built): install Open MPI (make "
                "deps) and rebuild");
  return std::make_unique<MpiCommunicator>();
}

}  // namespace tg::dist
