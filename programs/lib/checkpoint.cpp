#include "programs/lib/checkpoint.h"

#include <sys/stat.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>

#include "optim/adamw.h"
#include "programs/lib/json_fields.h"
#include "optim/param_group.h"
#include "tensor/error.h"

namespace tg {

// The format's name predates the image task; it stays so that every checkpoint written so far loads.
static const char* kFormat = "tilegrad-gpt-checkpoint";
static const char* kVersion = "1";

// The entries the checkpoint writes itself; a task's metadata must not shadow them.
static const char* const kReservedKeys[] = {"format", "version", "config", "state", "step", "task", "architecture"};

void save_checkpoint(const std::string& path, const NamedTensors& model_state, const NamedTensors& optimizer_state,
                     const TrainState& state, const std::string& config_json, const TaskCheckpoint& task) {
  NamedTensors tensors;
  for (const auto& [name, tensor] : model_state) tensors.emplace_back("model." + name, tensor);
  for (const auto& [name, tensor] : optimizer_state) tensors.emplace_back("optim." + name, tensor);
  for (const auto& [name, tensor] : task.tensors) tensors.emplace_back("task." + name, tensor);
  // JSON numbers keep 64-bit integers and doubles exactly (nlohmann prints 17 significant digits).
  nlohmann::json s = {
      {"step", state.step},
      {"total_steps", state.total_steps},
      // JSON has no infinity: "no validation yet" is null.
      {"best_val_loss", std::isfinite(state.best_val_loss) ? nlohmann::json(state.best_val_loss) : nlohmann::json()},
      {"best_step", state.best_step},
      {"elapsed_seconds", state.elapsed_seconds},
      {"dropout_rng", state.dropout_rng},
  };
  if (!state.rank_dropout_rng.empty()) s["rank_dropout_rng"] = state.rank_dropout_rng;
  std::map<std::string, std::string> metadata = {
      {"format", kFormat}, {"version", kVersion}, {"config", config_json}, {"state", s.dump()},
      {"step", std::to_string(state.step)}, {"task", task.kind}, {"architecture", task.architecture}};
  for (const auto& [key, value] : task.metadata) {
    for (const char* reserved : kReservedKeys)
      if (key == reserved)
        throw Error("save_checkpoint: the " + task.kind + " task's metadata key '" + key +
                    "' is one the checkpoint writes itself");
    metadata[key] = value;
  }
  save_safetensors(path, tensors, metadata);
}

static SafetensorsData with_prefix(const SafetensorsData& all, const std::string& prefix) {
  SafetensorsData part;
  part.path = all.path;
  for (const auto& [name, tensor] : all.tensors)
    if (name.compare(0, prefix.size(), prefix) == 0) part.tensors.emplace_back(name.substr(prefix.size()), tensor);
  return part;
}

Checkpoint load_checkpoint(const std::string& path) {
  struct stat info;
  if (stat(path.c_str(), &info) != 0) throw Error("checkpoint '" + path + "' does not exist");
  SafetensorsData data = load_safetensors(path);
  auto meta = [&](const std::string& key) -> const std::string& {
    auto it = data.metadata.find(key);
    if (it == data.metadata.end())
      throw Error("'" + path + "' is not a tilegrad training checkpoint (its metadata has no '" + key + "')");
    return it->second;
  };
  if (meta("format") != kFormat)
    throw Error("'" + path + "' is not a tilegrad training checkpoint (format '" + meta("format") + "')");
  if (meta("version") != kVersion)
    throw Error("checkpoint '" + path + "' has version " + meta("version") + "; this build reads version " + kVersion);

  Checkpoint ckpt;
  ckpt.path = path;
  ckpt.config_json = meta("config");
  nlohmann::json s = nlohmann::json::parse(meta("state"), nullptr, false);
  try {
    if (s.is_discarded()) throw Error("not JSON");
    if (!s.is_object()) throw Error(std::string("a JSON ") + s.type_name() + ", expected an object");
    TrainState& st = ckpt.state;
    st.step = json_integer(s, "step");
    st.total_steps = json_integer(s, "total_steps");
    st.best_val_loss = s.at("best_val_loss").is_null() ? std::numeric_limits<double>::infinity()
                                                       : json_number(s, "best_val_loss");
    st.best_step = json_integer(s, "best_step");
    st.elapsed_seconds = json_number(s, "elapsed_seconds");
    st.dropout_rng = json_generator_state(s, "dropout_rng");
    // Absent from one-process checkpoints and from those written before every rank's was kept.
    if (s.contains("rank_dropout_rng")) {
      const nlohmann::json& ranks = s.at("rank_dropout_rng");
      if (!ranks.is_array()) throw Error(std::string("rank_dropout_rng is a JSON ") + ranks.type_name() + ", expected an array");
      for (size_t r = 0; r < ranks.size(); r++) {
        nlohmann::json one = {{"rng", ranks[r]}};
        try {
          st.rank_dropout_rng.push_back(json_generator_state(one, "rng"));
        } catch (const std::exception& e) {
          throw Error("rank_dropout_rng[" + std::to_string(r) + "]: " + e.what());
        }
      }
    }
  } catch (const std::exception& e) {
    throw Error("checkpoint '" + path + "' has a malformed training state: " + e.what());
  }
  ckpt.model = with_prefix(data, "model.");
  ckpt.optimizer = with_prefix(data, "optim.");
  ckpt.task.tensors = with_prefix(data, "task.").tensors;
  // Checkpoints from before tasks existed are all GPT checkpoints, without an architecture entry.
  auto task = data.metadata.find("task");
  ckpt.task.kind = task == data.metadata.end() ? "text" : task->second;
  auto architecture = data.metadata.find("architecture");
  if (architecture != data.metadata.end()) ckpt.task.architecture = architecture->second;
  ckpt.task.metadata = data.metadata;
  if (ckpt.model.tensors.empty()) throw Error("checkpoint '" + path + "' holds no model tensors");
  return ckpt;
}

std::string describe_checkpoint_kind(const std::string& kind) {
  if (kind == "text") return "a text-model checkpoint";
  if (kind == "image") return "an image-classifier checkpoint";
  return "a '" + kind + "' checkpoint";
}

void load_full_precision_weights(Module& model, const Checkpoint& ckpt, float weight_decay) {
  model.load_state_dict(ckpt.model);
  bool has_masters = false;
  for (const auto& entry : ckpt.optimizer.tensors) has_masters |= entry.first.rfind("adamw.master.", 0) == 0;
  if (!has_masters) return;
  // AdamW's own loader knows which master belongs to which parameter, and copies a master into an
  // f32 parameter (optim/adamw.h); the optimizer itself is thrown away.
  AdamW optimizer(weight_decay_groups(model.parameters(), weight_decay), 0.0f);
  optimizer.load_state_tensors(ckpt.optimizer);
}

}  // namespace tg
