// Command-line flags for the programs: a small table of named flags bound to variables, with
// range checks, a --help text that shows every default, and one-line errors that name the flag.
//
//   FlagSet flags("train", "[FILE] [flags]", "Trains a GPT on a text file.");
//   flags.add_int("steps", &config.steps, "optimizer steps", 1, 1e9);
//   std::vector<std::string> files = flags.parse(argc, argv);  // throws tg::Error on bad input
//
// Values are written as `--name value` or `--name=value`; a switch is `--name` alone. Declared
// arguments (add_int_argument and the like: the benchmarks' sizes) take the first positional
// words, in the order declared, with the same checks; errors name them without dashes.
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
  // A flag that may be given several times: each value goes to `add`, which throws tg::Error (its
  // message a sentence about the value) when the value is bad.
  void add_list(const std::string& name, const std::function<void(const std::string&)>& add, const std::string& help);
  // A heading in the help text before the flags added next.
  void add_section(const std::string& title);
  // Positional arguments, shown under "arguments:" in the help; parse() throws, naming the first
  // one missing, when a required one is not given (declare the required ones first).
  void add_int_argument(const std::string& name, int64_t* target, const std::string& help, int64_t min, int64_t max,
                        bool required = false);
  void add_float_argument(const std::string& name, double* target, const std::string& help, double min, double max,
                          bool required = false);
  void add_string_argument(const std::string& name, std::string* target, const std::string& help,
                           const std::vector<std::string>& choices = {}, bool required = false);

  // Parses argv[1..]; returns the positional arguments past the declared ones. Throws tg::Error
  // with one line naming the flag for an unknown flag, a missing value, a malformed or out-of-range
  // value, and the argument for a missing required one.
  std::vector<std::string> parse(int argc, char** argv);

  bool help_requested() const { return help_requested_; }
  bool given(const std::string& name) const { return given_.count(name) > 0; }
  const std::string& program() const { return program_; }
  std::string help() const;

 private:
  struct Flag {
    std::string name, help, default_text;
    bool takes_value = true;
    bool is_section = false;
    bool is_argument = false;  // positional: named in messages without dashes
    bool required = false;     // an argument parse() insists on
    std::function<void(const std::string&)> set;  // throws on a bad value
    std::function<std::string()> show;            // current value for the help text
  };
  const Flag* find(const std::string& name) const;
  // The flag or argument behind add_int / add_int_argument (and so on); `label` names it in errors.
  static Flag int_flag(const std::string& name, const std::string& label, int64_t* target, const std::string& help,
                       int64_t min, int64_t max);
  static Flag float_flag(const std::string& name, const std::string& label, double* target, const std::string& help,
                         double min, double max, bool min_exclusive);
  static Flag string_flag(const std::string& name, const std::string& label, std::string* target,
                          const std::string& help, const std::vector<std::string>& choices);
  static std::string help_line(std::string left, const Flag& flag);
  void mark_argument(bool required);  // the flag just added is a positional argument

  std::string program_, usage_, description_;
  std::vector<Flag> flags_;
  std::set<std::string> given_;
  bool help_requested_ = false;
};

// Shortest round-trippable text for a double ("0.001", "6e-05"), for help texts and messages.
std::string format_number(double value);

}  // namespace tg
