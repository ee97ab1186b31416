#include "programs/lib/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "tensor/error.h"

namespace tg {

// %.9g round-trips a float: a resumed run's losses compare exactly with an uninterrupted one's.
static std::string cell(double value) {
  if (std::isnan(value)) return "";
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.9g", value);
  return buffer;
}

MetricsLog::MetricsLog(const std::string& path, const std::string& throughput_column,
                       std::vector<std::string> extra_columns, bool resume, int64_t resume_step)
    : path_(path), header_("step,time_s,train_loss,val_loss,lr," + throughput_column),
      extra_columns_(std::move(extra_columns)) {
  for (const auto& column : extra_columns_) header_ += "," + column;
  std::vector<std::string> kept;
  if (resume) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty() || line == header_) continue;
      if (std::strtoll(line.c_str(), nullptr, 10) <= resume_step) kept.push_back(line);
    }
  }
  std::ofstream out(path, std::ios::trunc);
  if (!out) throw Error("cannot write '" + path + "'");
  out << header_ << "\n";
  for (const auto& line : kept) out << line << "\n";
}

void MetricsLog::append(const MetricsRow& row) {
  for (const auto& entry : row.extra)
    if (std::find(extra_columns_.begin(), extra_columns_.end(), entry.first) == extra_columns_.end())
      throw Error("metrics.csv has no column '" + entry.first + "' (its columns: " + header_ + ")");
  char fixed[160];
  std::snprintf(fixed, sizeof(fixed), "%lld,%.3f,%s,%s,%.6g,%.1f", static_cast<long long>(row.step), row.time_seconds,
                cell(row.train_loss).c_str(), cell(row.val_loss).c_str(), row.lr, row.examples_per_second);
  std::string line = fixed;
  for (const auto& column : extra_columns_) {
    auto it = row.extra.find(column);
    line += "," + (it == row.extra.end() ? std::string() : cell(it->second));
  }
  FILE* file = std::fopen(path_.c_str(), "a");
  if (!file) throw Error("cannot append to '" + path_ + "'");
  std::fprintf(file, "%s\n", line.c_str());
  std::fclose(file);
}

std::string plot_losses(const std::string& csv_path, const std::string& png_path, const std::string& example) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0)
    return "gnuplot is not installed, so no loss.png (install it with: sudo apt-get install gnuplot-nox); the "
           "numbers are in " + csv_path;
  // Columns are found by name in the header (1-based for gnuplot); a task's accuracy columns get
  // a panel of their own, in percent.
  std::vector<std::string> header;
  {
    std::ifstream csv(csv_path);
    std::string line, name;
    std::getline(csv, line);
    std::stringstream names(line);
    while (std::getline(names, name, ',')) header.push_back(name);
  }
  auto column = [&](const std::string& name) {
    auto it = std::find(header.begin(), header.end(), name);
    return it == header.end() ? 0 : static_cast<int>(it - header.begin()) + 1;
  };
  const int val_accuracy = column("val_accuracy"), test_accuracy = column("test_accuracy");
  std::string script_path = png_path + ".gp";
  {
    std::ofstream script(script_path);
    script << "set terminal pngcairo size 900," << (val_accuracy ? 900 : 540) << " noenhanced\n"
           << "set output '" << png_path << "'\n"
           << "set datafile separator ','\n"
           << "set key autotitle columnhead\n";
    if (val_accuracy) script << "set multiplot layout 2,1\n";
    script << "set xlabel 'step'\nset ylabel 'loss (nats per " << example << ")'\nset grid\n"
           << "plot '" << csv_path << "' using 1:3 with lines lw 1 title 'train', "
           << "'' using 1:4 with linespoints lw 2 pt 7 ps 0.6 title 'validation'\n";
    if (val_accuracy) {
      script << "set ylabel 'accuracy (%)'\n"
             << "plot '" << csv_path << "' using 1:" << val_accuracy
             << " with linespoints lw 2 pt 7 ps 0.6 title 'validation'";
      if (test_accuracy) script << ", '' using 1:" << test_accuracy << " with points pt 9 ps 1.5 title 'test (final)'";
      script << "\nunset multiplot\n";
    }
  }
  std::string command = "gnuplot '" + script_path + "' >/dev/null 2>&1";
  int rc = std::system(command.c_str());
  std::remove(script_path.c_str());
  if (rc != 0) return "gnuplot failed to draw " + png_path + " (run: gnuplot " + script_path + " to see why)";
  return "";
}

}  // namespace tg
