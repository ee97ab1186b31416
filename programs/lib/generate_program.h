// ./generate's main: loads a checkpoint (a run folder or a .safetensors file) and streams text
// from it. Returns the process exit status; errors are one line on stderr.
#pragma once

namespace tg {

int generate_main(int argc, char** argv);

}  // namespace tg
