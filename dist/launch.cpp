#include "dist/launch.h"

#include <cstdlib>

#include "dist/mpi_communicator.h"
#include "dist/nccl_communicator.h"
#include "dist/single_process_communicator.h"

namespace tg::dist {

namespace {

// The text of an environment variable, or null when it is unset or empty.
const char* env_text(const char* name) {
  const char* text = std::getenv(name);
  return text && *text ? text : nullptr;
}

// An integer environment variable in [low, high]; `fallback` when unset and `required` is false.
int env_int(const char* name, long low, long high, bool required, int fallback, const std::string& launcher) {
  const char* text = env_text(name);
  if (!text) {
    if (required) throw Error("launched by " + launcher + ": the environment variable " + name + " is not set");
    return fallback;
  }
  char* end = nullptr;
  long value = std::strtol(text, &end, 10);
  if (*end != '\0' || value < low || value > high)
    throw Error(std::string("environment variable ") + name + " is \"" + text + "\", expected " +
                (low == 0 ? "a non-negative integer" : "an integer") + " in [" + std::to_string(low) + ", " +
                std::to_string(high) + "]");
  return static_cast<int>(value);
}

constexpr long kMaxRanks = 1000000;

}  // namespace

// Throws unless rank < world size (both already read).
static void check_rank(const LaunchInfo& info) {
  if (info.world_size < 1 || info.rank >= info.world_size)
    throw Error("launched by " + info.launcher + " as rank " + std::to_string(info.rank) + " of world size " +
                std::to_string(info.world_size) + ": the rank must be below the world size");
}

LaunchInfo detect_launch() {
  LaunchInfo info;
  if (env_text("OMPI_COMM_WORLD_SIZE")) {
    info.launcher = "mpirun";
    info.world_size = env_int("OMPI_COMM_WORLD_SIZE", 0, kMaxRanks, true, 1, info.launcher);
    info.rank = env_int("OMPI_COMM_WORLD_RANK", 0, kMaxRanks, true, 0, info.launcher);
    check_rank(info);
    info.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0, kMaxRanks, false, 0, info.launcher);
  } else if (env_text("WORLD_SIZE")) {
    info.launcher = "torchrun-style variables";
    info.world_size = env_int("WORLD_SIZE", 0, kMaxRanks, true, 1, info.launcher);
    info.rank = env_int("RANK", 0, kMaxRanks, true, 0, info.launcher);
    check_rank(info);
    info.local_rank = env_int("LOCAL_RANK", 0, kMaxRanks, true, 0, info.launcher);
    if (info.world_size > 1) {
      const char* addr = env_text("MASTER_ADDR");
      if (!addr)
        throw Error("launched by torchrun-style variables as " + std::to_string(info.world_size) +
                    " ranks: MASTER_ADDR is not set (the host where rank 0 serves the rendezvous store)");
      info.master_addr = addr;
      info.master_port = env_int("MASTER_PORT", 1, 65535, true, 0, info.launcher);
    }
  }
  // Ranks on a machine are numbered in the order of their global ranks, so a local rank never
  // exceeds the rank: a larger one is a mistyped variable.
  if (info.local_rank > info.rank)
    throw Error("launched by " + info.launcher + " as rank " + std::to_string(info.rank) + " with local rank " +
                std::to_string(info.local_rank) +
                ": the local rank (this rank's place on its machine) cannot exceed the rank");
  return info;
}

Device rank_device(Device device, const LaunchInfo& launch) {
  if (!device.is_cuda() || launch.world_size == 1) return device;
  int count = cuda_device_count();
  if (launch.local_rank >= count)
    throw Error("launched by " + launch.launcher + " as rank " + std::to_string(launch.rank) + " with local rank " +
                std::to_string(launch.local_rank) + " on CUDA: this machine shows " + std::to_string(count) +
                " CUDA device" + (count == 1 ? "" : "s") + " (" + cuda_status() +
                "), and each rank needs its own (cuda:<local rank>); start at most " + std::to_string(count) +
                " ranks per machine");
  return Device::cuda(launch.local_rank);
}

std::unique_ptr<Communicator> make_communicator(Device device, const LaunchInfo& launch, std::chrono::seconds timeout) {
  if (launch.world_size == 1) return std::make_unique<SingleProcessCommunicator>(device.type);
  if (device.is_cuda()) {
    if (!built_with_nccl())
      throw Error("launched as " + std::to_string(launch.world_size) + " ranks on CUDA, but " + no_nccl_reason() +
                  "; or train the ranks on the CPU (--device cpu under mpirun)");
    return std::make_unique<NcclCommunicator>(device, launch, timeout);
  }
  if (launch.launcher != "mpirun")
    throw Error("launched as " + std::to_string(launch.world_size) + " CPU ranks by " + launch.launcher +
                ": the MPI engine starts under mpirun (mpirun -np " + std::to_string(launch.world_size) +
                " ...); torchrun-style variables start CUDA ranks (--device cuda)");
  if (!built_with_mpi())
    throw Error("launched by mpirun as " + std::to_string(launch.world_size) +
                " ranks, but this build has no MPI (mpicxx was not found when it was built): install Open MPI (make "
                "deps) and rebuild");
  auto comm = std::make_unique<MpiCommunicator>();
  comm->set_timeout(timeout);
  return comm;
}

}  // namespace tg::dist
