// ./classify: top-5 predictions of a ./train image checkpoint; ./classify --help lists the flags.
#include "programs/lib/classify_program.h"

int main(int argc, char** argv) { return tg::classify_main(argc, argv); }
