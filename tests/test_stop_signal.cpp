// programs/lib/stop_signal.h: a stop request made on one thread is seen by another. Each test
// runs in a child process (a death test), because the handlers and the flag are process-wide and
// a request cannot be taken back.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "programs/lib/stop_signal.h"

using namespace tg;

namespace {

// Installs the handlers, lets `signal` arrive on a thread other than the one that polls (raise
// sends it to the calling thread), spins until the poller sees it, and exits 0 when the name is
// `expected`.
[[noreturn]] void signal_on_another_thread(int signal, const char* expected) {
  install_stop_handlers();
  std::thread other([signal] { std::raise(signal); });
  while (!stop_requested()) std::this_thread::yield();
  other.join();
  std::exit(std::strcmp(stop_signal_name(), expected) == 0 ? 0 : 1);
}

}  // namespace

// A process-directed signal lands on any thread that does not block it: a loader's prefetch
// thread or an OpenMP worker as well as the training thread that polls the flag, with nothing
// else ordering the two. So the flag is an atomic; under `make TSAN=1 test` ThreadSanitizer
// reports the volatile sig_atomic_t it replaced as a data race here.
TEST(StopSignalDeathTest, ASignalOnAnotherThreadReachesThePollingThread) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // re-executes the binary: no fork of a threaded process
  EXPECT_EXIT(signal_on_another_thread(SIGINT, "SIGINT"), ::testing::ExitedWithCode(0), "");
  EXPECT_EXIT(signal_on_another_thread(SIGTERM, "SIGTERM"), ::testing::ExitedWithCode(0), "");
}

// The handler is one-shot: a second Ctrl-C ends the process at once, as the user insists.
TEST(StopSignalDeathTest, TheSecondSignalEndsTheProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        install_stop_handlers();
        std::raise(SIGINT);
        if (!stop_requested()) std::exit(1);
        std::raise(SIGINT);
        std::exit(2);  // not reached
      },
      ::testing::KilledBySignal(SIGINT), "");
}
