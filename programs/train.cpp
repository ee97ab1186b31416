// ./train: a GPT on any text file (programs/lib/text_task.h) through the one training loop
// (programs/lib/trainer.h); everything lives in programs/lib. ./train --help
// lists the flags.
#include "programs/lib/trainer.h"

int main(int argc, char** argv) { return tg::train_main(argc, argv); }
