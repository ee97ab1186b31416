#include "programs/lib/stop_signal.h"

#include <atomic>
#include <csignal>

namespace tg {

// The kernel delivers a process-directed signal to any thread that does not block it: the loaders'
// prefetch threads and OpenMP's workers as well as the training thread that polls the flag. A
// volatile sig_atomic_t is only safe for a handler that runs on the reading thread, so across
// threads the flag is a lock-free atomic, which C++17 also allows in a signal handler.
static std::atomic<int> g_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "the stop flag is written from a signal handler");

static void on_signal(int signal) { g_signal.store(signal, std::memory_order_relaxed); }

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESETHAND;  // the second Ctrl-C gets the default action: the user insists
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

bool stop_requested() { return g_signal.load(std::memory_order_relaxed) != 0; }

const char* stop_signal_name() { return g_signal.load(std::memory_order_relaxed) == SIGTERM ? "SIGTERM" : "SIGINT"; }

}  // namespace tg
