// Starting a command as several MPI ranks from a test: the mpirun prefix `make test` uses (two
// ranks on a two-core machine: oversubscribed, one OpenMP thread each, allowed as root in a
// container), and whether this build and machine can run it at all.
#pragma once
#include <cstdlib>
#include <string>

#include "dist/mpi_communicator.h"

namespace tg::test {

// Empty when ranks can be started; otherwise why not, for GTEST_SKIP.
inline std::string why_no_mpirun() {
  if (!tg::dist::built_with_mpi()) return "this build has no MPI (mpicxx was not found when it was built; make deps installs it)";
  if (std::system("command -v mpirun >/dev/null 2>&1") != 0) return "mpirun is not installed (make deps installs openmpi-bin)";
  if (std::getenv("OMPI_COMM_WORLD_SIZE")) return "this process is already an MPI rank";
  return "";
}

// `timeout` ends a job that hangs (a failing rank skipped a collective): the test then fails
// instead of stopping `make test`.
//
// Under `make SAN=1 test` (LSAN_OPTIONS set) the ranks also unwind allocation stacks fully: Open MPI
// is built without frame pointers, so the fast unwinder stops inside it and its allocations at exit
// would be reported from "<unknown module>", where tests/lsan_mpi.supp cannot match them. Only the
// ranks pay for the slow unwinder, not the whole suite.
inline std::string mpirun_prefix(int ranks, int timeout_seconds = 300) {
  std::string lsan;
  if (const char* options = std::getenv("LSAN_OPTIONS"))
    lsan = "LSAN_OPTIONS='" + std::string(options) + ":fast_unwind_on_malloc=0' ";
  return lsan + "timeout " + std::to_string(timeout_seconds) + " mpirun --allow-run-as-root --oversubscribe -np " +
         std::to_string(ranks) + " -x OMP_NUM_THREADS=1 ";
}

}  // namespace tg::test
