#include "programs/lib/make_task.h"

#include <filesystem>

#include "programs/lib/image_task.h"
#include "programs/lib/text_task.h"
#include "tensor/error.h"

namespace tg {

std::string task_kind_for(const std::string& data) { return std::filesystem::is_directory(data) ? "image" : "text"; }

// Both tasks' ops have CUDA kernels (the CNN's: ops/cuda/conv2d.h, batchnorm.h, pool.h).
bool task_runs_on_cuda(const std::string& kind) { return kind == "text" || kind == "image"; }

void add_task_flags(FlagSet& flags, RunConfig& c) {
  add_text_flags(flags, c.text);
  add_image_flags(flags, c.image);
}

// A flag of one task given to another is a mistake worth one line, not silence.
static void refuse_flags(const FlagSet& flags, const std::vector<std::string>& names, const std::string& owner,
                         const std::string& kind) {
  for (const std::string& name : names)
    if (flags.given(name))
      throw Error("--" + name + " applies to " + owner + " only, and this run's data is " + kind + " data");
}

void resolve_task_defaults(RunConfig& c, const FlagSet& flags, bool gpu) {
  if (c.task == "text") {
    refuse_flags(flags, image_flag_names(), "image data (a folder)", c.task);
    return resolve_text_defaults(c, flags, gpu);
  }
  refuse_flags(flags, text_flag_names(), "text data (a FILE)", c.task);
  if (c.task == "image") return resolve_image_defaults(c, flags, gpu);
}

std::unique_ptr<Task> make_task(const RunConfig& c, const Checkpoint* resume_from) {
  if (c.task == "text") return std::make_unique<TextTask>(c, resume_from);
  if (c.task == "image") return std::make_unique<ImageTask>(c, resume_from);
  throw Error("unknown task '" + c.task + "' (a checkpoint of a newer tilegrad?)");
}

}  // namespace tg
