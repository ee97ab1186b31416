// The one exception type tilegrad throws for bad input, and helpers to build its messages.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace tg {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& shape);  // "(2, 3, 4)"; "()" for a scalar

}  // namespace tg

// Throws tg::Error with the message when the condition is false. For internal invariants and
// user-facing checks alike: the message should name the op, what was expected and what was found.
#define TG_CHECK(cond, msg)                      \
  do {                                           \
    if (!(cond)) throw ::tg::Error(msg);         \
  } while (0)
