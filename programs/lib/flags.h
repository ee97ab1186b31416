// Command-line flags for the programs: a small table of named flags bound to variables, with
// range checks, a --help text that shows every default, and one-line errors that name the flag.
//
//   FlagSet flags("train", "[FILE] [flags]", "Trains a GPT on a text file.");
//   flags.add_int("steps", &config.steps, "optimizer steps", 1, 1e9);
//   std::vector<std::string> files = flags.parse(argc, argv);  // throws tg::Error on bad input
//
// Values are written as `--name value` or `--name=value`; a switch is `--name` alone.
#pragma once
#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace tg {

class FlagSet {
 public:
  FlagSet(std::string program, std::string usage, std::string description);

  // The help shows the variable's value at the time help() is called as the default, unless
  // `default_text` says something better ("from --model").
  void add_int(const std::string& name, int64_t* target, const std::string& help, int64_t min, int64_t max,
               const std::string& default_text = "");
  // A float in [min, max] (bounds exclusive when the flags say so).
  void add_float(const std::string& name, double* target, const std::string& help, double min, double max,
                 bool min_exclusive = false, const std::string& default_text = "");
  // A string, restricted to `choices` when they are given.
  void add_string(const std::string& name, std::string* target, const std::string& help,
                  const std::vector<std::string>& choices = {}, const std::string& default_text = "");
  void add_switch(const std::string& name, bool* target, const std::string& help);
  // A heading in the help text before the flags added next.
  void add_section(const std::string& title);

  // Parses argv[1..]; returns the positional arguments. Throws tg::Error with one line naming the
  // flag for an unknown flag, a missing value, a malformed or out-of-range value.
  std::vector<std::string> parse(int argc, char** argv);

  bool help_requested() const { return help_requested_; }
  bool given(const std::string& name) const { return given_.count(name) > 0; }
  std::string help() const;

 private:
  struct Flag {
    std::string name, help, default_text;
    bool takes_value = true;
    bool is_section = false;
    std::function<void(const std::string&)> set;  // throws on a bad value
    std::function<std::string()> show;            // current value for the help text
  };
  const Flag* find(const std::string& name) const;

  std::string program_, usage_, description_;
  std::vector<Flag> flags_;
  std::set<std::string> given_;
  bool help_requested_ = false;
};

// Shortest round-trippable text for a double ("0.001", "6e-05"), for help texts and messages.
std::string format_number(double value);

}  // namespace tg
