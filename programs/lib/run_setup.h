// Everything ./train does before its first step, in the order that loses nothing on bad input:
// flags, the task the data asks for, the checkpoint to resume (its task, and its configuration
// under the flags given again), device and precision, the task's data (for text: the corpus, the
// tokenizer, the train/validation split), and last the run folder, so that no file is written
// until every check has passed.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "programs/lib/checkpoint.h"
#include "programs/lib/run_config.h"
#include "programs/lib/task.h"

namespace tg {

struct RunSetup {
  RunConfig config;
  std::unique_ptr<Task> task;  // its data read; its model not built yet
  std::optional<Checkpoint> resume_from;
  std::string resume_command;  // what to type to continue this run
  std::string last_path, best_path;
};

// Parses argv and prepares the run. Returns nullopt after printing --help or the --plan. Throws tg::Error with
// one line naming the problem for any bad input.
std::optional<RunSetup> setup_run(int argc, char** argv);

// The run folder's files.
std::string last_checkpoint_path(const std::string& out_dir);
std::string best_checkpoint_path(const std::string& out_dir);
// What a --ckpt value names: a run folder means its best checkpoint (the lowest validation loss),
// else its last; a file is itself. Throws naming --ckpt for a folder holding neither.
std::string checkpoint_file_for(const std::string& path);

}  // namespace tg
