// A JSON value from an untrusted file, quoted in an error message.
//
// nlohmann's dump() recurses once per nesting level, so dumping a value nested 500,000 deep (a
// 1 MB file) overflows the stack, and a message should not carry a megabyte of JSON either. Flat
// values are quoted (cut at 80 characters); anything holding arrays or objects is described by its
// type and size. Invalid UTF-8 in a string is replaced rather than thrown.
#pragma once
#include <string>

namespace tg {

template <class Json>
std::string json_excerpt(const Json& value) {
  bool flat = value.is_primitive();
  if (value.is_structured() && value.size() <= 16) {
    flat = true;
    for (const auto& item : value) flat = flat && item.is_primitive();
  }
  if (!flat)
    return std::string("a JSON ") + value.type_name() + " of " + std::to_string(value.size()) +
           (value.size() == 1 ? " entry" : " entries");
  std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  return text.size() <= 80 ? text : text.substr(0, 77) + "...";
}

}  // namespace tg
