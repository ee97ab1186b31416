#include "programs/lib/stop_signal.h"

#include <csignal>

namespace tg {

static volatile std::sig_atomic_t g_signal = 0;

static void on_signal(int signal) { g_signal = signal; }

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESETHAND;  // the second Ctrl-C gets the default action: the user insists
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

bool stop_requested() { return g_signal != 0; }

const char* stop_signal_name() { return g_signal == SIGTERM ? "SIGTERM" : "SIGINT"; }

}  // namespace tg
