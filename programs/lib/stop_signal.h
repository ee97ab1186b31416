// Ctrl-C and SIGTERM as a request, not an ending: the training loop finishes its step, writes a
// checkpoint and exits 0. A second signal ends the process at once (the handler is one-shot).
#pragma once

namespace tg {

void install_stop_handlers();  // SIGINT and SIGTERM
bool stop_requested();
const char* stop_signal_name();  // "SIGINT" or "SIGTERM" once one arrived

}  // namespace tg
