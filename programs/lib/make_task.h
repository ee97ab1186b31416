// The tasks ./train knows, and which one a run gets: a text file trains the text task (a GPT), a
// directory the image task (a CNN classifier). Adding a task is one file for it and one `if` in
// each function here.
#pragma once
#include <memory>
#include <string>

#include "programs/lib/checkpoint.h"
#include "programs/lib/flags.h"
#include "programs/lib/run_config.h"
#include "programs/lib/task.h"

namespace tg {

// "image" when `data` is a directory, "text" otherwise (a file, or a path that does not exist:
// reading it names the problem).
std::string task_kind_for(const std::string& data);

// Whether the task's ops all have CUDA kernels: --device auto picks a visible GPU only then.
bool task_runs_on_cuda(const std::string& kind);

// Every task's flags, each task under headings of its own (after the loop's).
void add_task_flags(FlagSet& flags, RunConfig& config);

// config.task's defaults (presets, optimizer, batch, steps, lr); refuses another task's flags.
void resolve_task_defaults(RunConfig& config, const FlagSet& flags, bool gpu);

// The task for config.task, with its data read and checked (nothing is written). `resume_from`
// is the checkpoint a resumed run continues, or null.
std::unique_ptr<Task> make_task(const RunConfig& config, const Checkpoint* resume_from);

}  // namespace tg
