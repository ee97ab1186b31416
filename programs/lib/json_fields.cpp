#include "programs/lib/json_fields.h"

#include <string>

#include "tensor/error.h"

namespace tg {

int64_t json_integer(const nlohmann::json& object, const char* key) {
  const nlohmann::json& v = object.at(key);
  if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)))
    throw Error(std::string("'") + key + "' must be a 64-bit integer, found a JSON " +
                (v.is_number_float() ? std::string("float") : v.is_number() ? "integer beyond 2^63" : v.type_name()));
  return v.get<int64_t>();
}

double json_number(const nlohmann::json& object, const char* key) {
  const nlohmann::json& v = object.at(key);
  if (!v.is_number()) throw Error(std::string("'") + key + "' must be a number, found a JSON " + v.type_name());
  return v.get<double>();
}

Generator::State json_generator_state(const nlohmann::json& object, const char* key) {
  Generator::State state;
  const nlohmann::json& v = object.at(key);
  if (!v.is_array() || v.size() != state.size())
    throw Error(std::string("'") + key + "' must be an array of " + std::to_string(state.size()) + " integers");
  for (size_t i = 0; i < state.size(); i++) {
    if (!v[i].is_number_unsigned()) throw Error(std::string("'") + key + "' must hold unsigned 64-bit integers");
    state[i] = v[i].get<uint64_t>();
  }
  return state;
}

}  // namespace tg
