// ./generate: streams text from a ./train checkpoint; ./generate --help lists the flags.
#include "programs/lib/generate_program.h"

int main(int argc, char** argv) { return tg::generate_main(argc, argv); }
