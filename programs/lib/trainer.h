// ./train's main: setup (run_setup.h), then the training loop with evaluation, samples,
// checkpoints, metrics and progress. Returns the process exit status; every error is one line on
// stderr, never an uncaught exception.
#pragma once

namespace tg {

int train_main(int argc, char** argv);

}  // namespace tg
