#include "programs/lib/flags.h"

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

void FlagSet::add_int(const std::string& name, int64_t* target, const std::string& help, int64_t min, int64_t max,
                      const std::string& default_text) {
  Flag flag;
  flag.name = name;
  flag.help = help;
  flag.default_text = default_text;
  flag.set = [=](const std::string& text) {
    errno = 0;
    char* end = nullptr;
    long long value = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno == ERANGE)
      throw Error("--" + name + ": expected an integer, got '" + text + "'");
    if (value < min || value > max)
      throw Error("--" + name + " " + text + " is out of range: expected " + std::to_string(min) + " to " +
                  std::to_string(max));
    *target = value;
  };
  flag.show = [target] { return std::to_string(*target); };
  flags_.push_back(std::move(flag));
}

void FlagSet::add_float(const std::string& name, double* target, const std::string& help, double min, double max,
                        bool min_exclusive, const std::string& default_text) {
  Flag flag;
  flag.name = name;
  flag.help = help;
  flag.default_text = default_text;
  flag.set = [=](const std::string& text) {
    char* end = nullptr;
    double value = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || !std::isfinite(value))
      throw Error("--" + name + ": expected a finite number, got '" + text + "'");
    bool low = min_exclusive ? value <= min : value < min;
    if (low || value > max)
      throw Error("--" + name + " " + text + " is out of range: expected " + (min_exclusive ? "more than " : "") +
                  format_number(min) + " to " + format_number(max));
    *target = value;
  };
  flag.show = [target] { return format_number(*target); };
  flags_.push_back(std::move(flag));
}

void FlagSet::add_string(const std::string& name, std::string* target, const std::string& help,
                         const std::vector<std::string>& choices, const std::string& default_text) {
  Flag flag;
  flag.name = name;
  flag.help = help;
  flag.default_text = default_text;
  flag.set = [=](const std::string& text) {
    if (choices.empty()) { *target = text; return; }
    for (const auto& c : choices)
      if (c == text) { *target = text; return; }
    std::string list;
    for (const auto& c : choices) list += (list.empty() ? "" : "|") + c;
    throw Error("--" + name + " '" + text + "' is not one of " + list);
  };
  flag.show = [target] { return target->empty() ? std::string("none") : *target; };
  flags_.push_back(std::move(flag));
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
    if (!flag.is_section && flag.name == name) return &flag;
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
        if (f.is_section) continue;
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
  return positional;
}

std::string FlagSet::help() const {
  std::ostringstream out;
  out << "usage: " << program_ << " " << usage_ << "\n\n" << description_ << "\n";
  for (const auto& flag : flags_) {
    if (flag.is_section) { out << "\n" << flag.name << ":\n"; continue; }
    std::string left = "  --" + flag.name + (flag.takes_value ? " X" : "");
    if (left.size() < 22) left.resize(22, ' ');
    else left += "  ";
    std::string shown = flag.default_text.empty() ? flag.show() : flag.default_text;
    out << left << flag.help << " [default: " << shown << "]\n";
  }
  out << "  -h, --help          this text\n";
  return out.str();
}

}  // namespace tg
