// Helpers shared by the test files: error expectations and a scratch folder.
#pragma once
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "tensor/error.h"

// Expects `fn` to throw tg::Error whose message contains every one of `parts` (bad-input tests
// check that the message names the op, the argument and what was found, not just that it threw).
inline void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
  } catch (const tg::Error& e) {
    std::string message = e.what();
    for (const std::string& part : parts)
      EXPECT_NE(message.find(part), std::string::npos) << "message \"" << message << "\" does not name \"" << part << "\"";
    return;
  }
  ADD_FAILURE() << "expected a tg::Error naming \"" << (parts.empty() ? std::string() : parts.front()) << "\"";
}

// One fragment. (const char*, not std::string: a braced pair of literals would also match
// std::string's iterator-pair constructor and make the call ambiguous.)
inline void expect_error(const std::function<void()>& fn, const char* part) {
  expect_error(fn, std::vector<std::string>{part});
}

// Every got[i] within atol + rtol * |want[i]| of a double-precision reference; reports the first
// five misses by index, prefixed with `what`.
inline void expect_close(const std::vector<float>& got, const std::vector<double>& want, double atol, double rtol,
                         const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int reported = 0;
  for (size_t i = 0; i < got.size(); i++)
    if (!(std::fabs(got[i] - want[i]) <= atol + rtol * std::fabs(want[i])) && reported++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: got " << got[i] << ", want " << want[i];
}

// The same for a statement: EXPECT_THROW_WITH(load(path), "truncated"),
// EXPECT_ERROR_MENTIONS(model.forward(idx), "block_size", "(2, 9)").
#define EXPECT_THROW_WITH(statement, fragment) expect_error([&] { statement; }, std::vector<std::string>{fragment})
#define EXPECT_ERROR_MENTIONS(statement, ...) expect_error([&] { statement; }, std::vector<std::string>{__VA_ARGS__})

// A scratch folder under /tmp, removed with everything in it.
struct TempDir {
  std::string path;
  TempDir() {
    char name[] = "/tmp/tg_test_XXXXXX";
    path = mkdtemp(name);
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return path + "/" + name; }
  std::string write(const std::string& name, const std::string& bytes) const {
    std::ofstream(file(name), std::ios::binary) << bytes;
    return file(name);
  }
};
