// Running the built programs (./train, ./generate, ./classify) from a test: their exit status and
// output, a run stopped by a signal, the one-line error check, and the loss columns of a run's
// metrics.csv. Shared by the text and image program tests.
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/test_util.h"

#ifndef TG_PROGRAM_DIR
#define TG_PROGRAM_DIR "./"
#endif

namespace tg::test {

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

inline bool exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }


struct Result {
  int status = -1;
  std::string out, err;
};

// Runs a program from the build (train or generate) with shell-quoted `args`, after `prefix`
// (a command such as setpriv that runs it).
inline Result run(const std::string& program, const std::string& args, const std::string& prefix = "") {
  TempDir logs;
  std::string command = prefix + std::string(TG_PROGRAM_DIR) + program + " " + args + " >" + logs.file("out") + " 2>" +
                        logs.file("err") + " </dev/null";
  int raw = std::system(command.c_str());
  Result r;
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  r.out = read_file(logs.file("out"));
  r.err = read_file(logs.file("err"));
  return r;
}

// Bad input: a non-zero status and exactly one line on stderr that contains `fragment`.
#define EXPECT_ONE_LINE_ERROR(result, fragment)                                                 \
  do {                                                                                          \
    Result r_ = (result);                                                                       \
    EXPECT_NE(r_.status, 0) << r_.out << r_.err;                                                \
    EXPECT_NE(r_.err.find(fragment), std::string::npos) << "stderr: " << r_.err;                \
    EXPECT_EQ(std::count(r_.err.begin(), r_.err.end(), '\n'), 1) << "stderr: " << r_.err;      \
  } while (0)

// A corpus of real text that every checkout has: this repository's README and some of its
// sources (about 100 KB of English and C++), so that runs learn something less trivial than a
// repeated line.
inline std::string repository_text() {
  std::string text;
  for (const char* path : {"README.md", "tensor/tensor.h", "autograd/engine.h", "nn/module.h", "nn/gpt.h",
                           "optim/adamw.h", "ops/check.h", "ops/cpu/gemm.cpp", "ops/cpu/attention.cpp"}) {
    std::string body = read_file(path);
    EXPECT_FALSE(body.empty()) << path << " is missing: run the tests from the repository root";
    text += body;
  }
  return text;
}

// The (step, train loss, val loss) columns of metrics.csv: what must match across a resume.
inline std::vector<std::string> loss_columns(const std::string& csv) {
  std::vector<std::string> rows;
  std::istringstream in(csv);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> fields;
    std::stringstream cells(line);
    std::string cell;
    while (std::getline(cells, cell, ',')) fields.push_back(cell);
    while (fields.size() < 4) fields.push_back("");
    rows.push_back(fields[0] + "," + fields[2] + "," + fields[3]);
  }
  return rows;
}

// Starts ./train, sends `signal` once it has printed the status line of step `after_step`, and
// waits for it. Returns its status and output.
inline Result run_and_signal(const std::vector<std::string>& args, int signal, int after_step) {
  int out_pipe[2];
  if (pipe(out_pipe) != 0) return {};
  TempDir logs;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out_pipe[1], STDOUT_FILENO);
    int err = open(logs.file("err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(err, STDERR_FILENO);
    close(out_pipe[0]);
    std::string program = std::string(TG_PROGRAM_DIR) + "train";
    std::vector<char*> argv = {const_cast<char*>(program.c_str())};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(program.c_str(), argv.data());
    _exit(127);
  }
  close(out_pipe[1]);
  Result r;
  std::string pending;
  bool sent = false;
  char buffer[4096];
  ssize_t n;
  while ((n = read(out_pipe[0], buffer, sizeof(buffer))) > 0) {
    r.out.append(buffer, static_cast<size_t>(n));
    pending.append(buffer, static_cast<size_t>(n));
    size_t newline;
    while ((newline = pending.find('\n')) != std::string::npos) {
      std::string line = pending.substr(0, newline);
      pending.erase(0, newline + 1);
      long step = 0;
      if (!sent && std::sscanf(line.c_str(), "step %ld/", &step) == 1 && step >= after_step) {
        kill(pid, signal);
        sent = true;
      }
    }
  }
  close(out_pipe[0]);
  int raw = 0;
  waitpid(pid, &raw, 0);
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  r.err = read_file(logs.file("err"));
  return r;
}

inline std::vector<std::string> split_args(const std::string& text) {
  std::vector<std::string> args;
  std::istringstream in(text);
  std::string a;
  while (in >> a) args.push_back(a);
  return args;
}

// ./train `args` into `out_dir`, stopped by SIGINT after step `after_step`, then resumed with
// --resume to its end. Fails the test (fatally) when a stage does not go as planned.
inline void stop_and_resume(const std::string& args, const std::string& out_dir, int after_step) {
  Result stopped = run_and_signal(split_args(args + " --out " + out_dir), SIGINT, after_step);
  ASSERT_EQ(stopped.status, 0) << stopped.err;
  ASSERT_NE(stopped.out.find("SIGINT: stopped at step "), std::string::npos) << "the run ended before the signal";
  Result resumed = run("train", args + " --out " + out_dir + " --resume");
  ASSERT_EQ(resumed.status, 0) << resumed.err;
}

}  // namespace tg::test
