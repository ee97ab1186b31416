// ./classify's main: loads an image-classifier checkpoint (a run folder or a .safetensors file)
// and prints each image's most probable classes. Returns the process exit status; errors are one
// line on stderr.
#pragma once

namespace tg {

int classify_main(int argc, char** argv);

}  // namespace tg
