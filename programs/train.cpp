// ./train: a GPT on any text file. Everything lives in programs/lib (see trainer.h); ./train --help
// lists the flags.
#include "programs/lib/trainer.h"

int main(int argc, char** argv) { return tg::train_main(argc, argv); }
