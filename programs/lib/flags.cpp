#include "programs/lib/flags.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "tensor/error.h"

namespace tg {

std::string format_number(double value) {
  char buffer[32];
  for (int precision = 1; precision <= 17; precision++) {
    std::snprintf(buffer, sizeof(buffer), "%.*g", precision, value);
    if (std::strtod(buffer, nullptr) == value) break;
  }
  return buffer;
}

FlagSet::FlagSet(std::string program, std::string usage, std::string description)
    : program_(std::move(program)), usage_(std::move(usage)), description_(std::move(description)) {}

FlagSet::Flag FlagSet::int_flag(const std::string& name, const std::string& label, int64_t* target,
                                const std::string& help, int64_t min, int64_t max) {
  Flag flag;
  flag.name = name;
  flag.help = help;
  flag.set = [=](const std::string& text) {
    errno = 0;
    char* end = nullptr;
    long long value = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno == ERANGE)
      throw Error(label + ": expected an integer, got '" + text + "'");
    if (value < min || value > max)
      throw Error(label + " " + text + " is out of range: expected " + std::to_string(min) + " to " +
                  std::to_string(max));
    *target = value;
  };
  flag.show = [target] { return std::to_string(*target); };
  return flag;
}

FlagSet::Flag FlagSet::float_flag(const std::string& name, const std::string& label, double* target,
                                  const std::string& help, double min, double max, bool min_exclusive) {
  Flag flag;
  flag.name = name;
  flag.help = help;
  flag.set = [=](const std::string& text) {
    char* end = nullptr;
    double value = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || !std::isfinite(value))
      throw Error(label + ": expected a finite number, got '" + text + "'");
    bool low = min_exclusive ? value <= min : value < min;
    if (low || value > max)
      throw Error(label + " " + text + " is out of range: expected " + (min_exclusive ? "more than " : "") +
                  format_number(min) + " to " + format_number(max));
    *target = value;
  };
  flag.show = [target] { return format_number(*target); };
  return flag;
}

FlagSet::Flag FlagSet::string_flag(const std::string& name, const std::string& label, std::string* target,
                                   const std::string& help, const std::vector<std::string>& choices) {
  Flag flag;
  flag.name = name;
  flag.help = help;
  flag.set = [=](const std::string& text) {
    if (choices.empty()) { *target = text; return; }
    for (const auto& c : choices)
      if (c == text) { *target = text; return; }
    std::string list;
    for (const auto& c : choices) list += (list.empty() ? "" : "|") + c;
    throw Error(label + " '" + text + "' is not one of " + list);
  };
  flag.show = [target] { return target->empty() ? std::string("none") : *target; };
  return flag;
}

void FlagSet::add_int(const std::string& name, int64_t* target, const std::string& help, int64_t min, int64_t max,
                      const std::string& default_text) {
  flags_.push_back(int_flag(name, "--" + name, target, help, min, max));
  flags_.back().default_text = default_text;
}

void FlagSet::add_float(const std::string& name, double* target, const std::string& help, double min, double max,
                        bool min_exclusive, const std::string& default_text) {
  flags_.push_back(float_flag(name, "--" + name, target, help, min, max, min_exclusive));
  flags_.back().default_text = default_text;
}

void FlagSet::add_string(const std::string& name, std::string* target, const std::string& help,
                         const std::vector<std::string>& choices, const std::string& default_text) {
  flags_.push_back(string_flag(name, "--" + name, target, help, choices));
  flags_.back().default_text = default_text;
}

void FlagSet::add_int_argument(const std::string& name, int64_t* target, const std::string& help, int64_t min,
                               int64_t max, bool required) {
  flags_.push_back(int_flag(name, name, target, help, min, max));
  mark_argument(required);
}

void FlagSet::add_float_argument(const std::string& name, double* target, const std::string& help, double min,
                                 double max, bool required) {
  flags_.push_back(float_flag(name, name, target, help, min, max, false));
  mark_argument(required);
}

void FlagSet::add_string_argument(const std::string& name, std::string* target, const std::string& help,
                                  const std::vector<std::string>& choices, bool required) {
  flags_.push_back(string_flag(name, name, target, help, choices));
  mark_argument(required);
}

void FlagSet::mark_argument(bool required) {
  flags_.back().is_argument = true;
  flags_.back().required = required;
  if (required) flags_.back().default_text = "required";
}

void FlagSet::add_switch(const std::string& name, bool* target, const std::string& help) {
  Flag flag;
  flag.name = name;
  flag.help = help;
  flag.default_text = "off";
  flag.takes_value = false;
  flag.set = [target](const std::string&) { *target = true; };
  flag.show = [] { return std::string("off"); };
  flags_.push_back(std::move(flag));
}

void FlagSet::add_list(const std::string& name, const std::function<void(const std::string&)>& add,
                       const std::string& help) {
  Flag flag;
  flag.name = name;
  flag.help = help + " (repeatable)";
  flag.default_text = "none";
  flag.set = [name, add](const std::string& text) {
    try {
      add(text);
    } catch (const Error& e) {
      throw Error("--" + name + ": " + e.what());
    }
  };
  flag.show = [] { return std::string("none"); };
  flags_.push_back(std::move(flag));
}

void FlagSet::add_section(const std::string& title) {
  Flag flag;
  flag.name = title;
  flag.help = "";
  flag.default_text = "";
  flag.is_section = true;
  flags_.push_back(std::move(flag));
}

const FlagSet::Flag* FlagSet::find(const std::string& name) const {
  for (const auto& flag : flags_)
    if (!flag.is_section && !flag.is_argument && flag.name == name) return &flag;
  return nullptr;
}

// Levenshtein distance, for "did you mean" on a misspelt flag.
static size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); j++) row[j] = j;
  for (size_t i = 1; i <= a.size(); i++) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); j++) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = up;
    }
  }
  return row[b.size()];
}

std::vector<std::string> FlagSet::parse(int argc, char** argv) {
  std::vector<std::string> positional;
  for (int i = 1; i < argc; i++) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") { help_requested_ = true; continue; }
    if (arg.size() < 2 || arg[0] != '-' || arg == "-") { positional.push_back(arg); continue; }
    if (arg == "--") {
      for (i++; i < argc; i++) positional.push_back(argv[i]);
      break;
    }
    std::string body = arg.substr(arg[1] == '-' ? 2 : 1), value;
    bool has_inline_value = false;
    size_t equals = body.find('=');
    if (equals != std::string::npos) { value = body.substr(equals + 1); body = body.substr(0, equals); has_inline_value = true; }
    const Flag* flag = find(body);
    if (!flag) {
      std::string suggestion;
      size_t best = 3;
      for (const auto& f : flags_) {
        if (f.is_section || f.is_argument) continue;
        size_t d = edit_distance(body, f.name);
        if (d < best) { best = d; suggestion = f.name; }
      }
      throw Error("unknown flag " + arg + (suggestion.empty() ? "" : " (did you mean --" + suggestion + "?)") +
                  "; see " + program_ + " --help");
    }
    if (!flag->takes_value) {
      if (has_inline_value) throw Error("--" + body + " takes no value, got '" + value + "'");
    } else if (!has_inline_value) {
      if (i + 1 >= argc) throw Error("--" + body + " needs a value; see " + program_ + " --help");
      value = argv[++i];
    }
    flag->set(value);
    given_.insert(body);
  }
  // The declared arguments take the first positional words, in order.
  size_t used = 0;
  for (const auto& flag : flags_) {
    if (!flag.is_argument) continue;
    if (used == positional.size()) {
      if (flag.required && !help_requested_)
        throw Error("missing " + flag.name + "; usage: " + program_ + " " + usage_);
      continue;
    }
    flag.set(positional[used++]);
    given_.insert(flag.name);
  }
  return std::vector<std::string>(positional.begin() + static_cast<std::ptrdiff_t>(used), positional.end());
}

std::string FlagSet::help_line(std::string left, const Flag& flag) {
  if (left.size() < 22) left.resize(22, ' ');
  else left += "  ";
  return left + flag.help + " [default: " + (flag.default_text.empty() ? flag.show() : flag.default_text) + "]\n";
}

std::string FlagSet::help() const {
  std::ostringstream out;
  // One blank line between the parts, whether or not the description ends with a newline.
  std::string description = description_;
  while (!description.empty() && description.back() == '\n') description.pop_back();
  out << "usage: " << program_ << " " << usage_ << "\n\n" << description << "\n";
  bool arguments = false;
  for (const auto& flag : flags_) {
    if (!flag.is_argument) continue;
    if (!arguments) out << "\narguments, in this order:\n";
    arguments = true;
    out << help_line("  " + flag.name, flag);
  }
  // The flags follow "flags:" after the arguments, else a blank line (a section heading brings its own).
  const auto first_flag = std::find_if(flags_.begin(), flags_.end(), [](const Flag& f) { return !f.is_argument; });
  if (arguments) out << "\nflags:\n";
  else if (first_flag == flags_.end() || !first_flag->is_section) out << "\n";
  for (const auto& flag : flags_) {
    if (flag.is_argument) continue;
    if (flag.is_section) { out << "\n" << flag.name << ":\n"; continue; }
    out << help_line("  --" + flag.name + (flag.takes_value ? " X" : ""), flag);
  }
  out << "  -h, --help          this text\n";
  return out.str();
}

}  // namespace tg
