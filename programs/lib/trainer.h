// ./train's main: setup (run_setup.h), then the one training loop (schedule, gradient
// accumulation, loss scaling, clipping, evaluation, samples, checkpoints, metrics, progress,
// signals) over the task the data asked for (task.h). train_main returns the process exit status;
// every error is one line on stderr, never an uncaught exception.
#pragma once

namespace tg {

struct RunSetup;

int train_main(int argc, char** argv);

// The training loop over a prepared run (run_setup.h) and its task: returns 0 when training ended
// or a signal stopped it with a checkpoint, 3 after a NaN or inf stop. Throws tg::Error.
int run_training(RunSetup& run);

}  // namespace tg
