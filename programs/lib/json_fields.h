// Typed reads of the JSON a checkpoint carries (the training state, the loaders' positions).
//
// nlohmann's get<int64_t>() casts a float, which is undefined behaviour past the int64 range,
// and wraps an unsigned integer above 2^63; a checkpoint is a file from disk, so these read each
// field by its JSON type and throw tg::Error naming the key and what was found instead.
#pragma once
#include <cstdint>

#include <nlohmann/json.hpp>

#include "tensor/random.h"

namespace tg {

int64_t json_integer(const nlohmann::json& object, const char* key);
double json_number(const nlohmann::json& object, const char* key);
Generator::State json_generator_state(const nlohmann::json& object, const char* key);

}  // namespace tg
