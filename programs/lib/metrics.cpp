#include "programs/lib/metrics.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "tensor/error.h"

namespace tg {

static const char* kHeader = "step,time_s,train_loss,val_loss,lr,tokens_per_s";

MetricsLog::MetricsLog(const std::string& path, bool resume, int64_t resume_step) : path_(path) {
  std::vector<std::string> kept;
  if (resume) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty() || line == kHeader) continue;
      if (std::strtoll(line.c_str(), nullptr, 10) <= resume_step) kept.push_back(line);
    }
  }
  std::ofstream out(path, std::ios::trunc);
  if (!out) throw Error("cannot write '" + path + "'");
  out << kHeader << "\n";
  for (const auto& line : kept) out << line << "\n";
}

void MetricsLog::append(const MetricsRow& row) {
  FILE* file = std::fopen(path_.c_str(), "a");
  if (!file) throw Error("cannot append to '" + path_ + "'");
  // %.9g round-trips a float: a resumed run's losses compare exactly with an uninterrupted one's.
  auto loss = [](double v) { char b[32]; if (std::isnan(v)) return std::string(); std::snprintf(b, sizeof(b), "%.9g", v); return std::string(b); };
  std::fprintf(file, "%lld,%.3f,%s,%s,%.6g,%.1f\n", static_cast<long long>(row.step), row.time_seconds,
               loss(row.train_loss).c_str(), loss(row.val_loss).c_str(), row.lr, row.tokens_per_second);
  std::fclose(file);
}

std::string plot_losses(const std::string& csv_path, const std::string& png_path) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0)
    return "gnuplot is not installed, so no loss.png (install it with: sudo apt-get install gnuplot-nox); the "
           "numbers are in " + csv_path;
  std::string script_path = png_path + ".gp";
  {
    std::ofstream script(script_path);
    script << "set terminal pngcairo size 900,540 noenhanced\n"
           << "set output '" << png_path << "'\n"
           << "set datafile separator ','\n"
           << "set key autotitle columnhead\n"
           << "set xlabel 'step'\nset ylabel 'loss (nats per token)'\nset grid\n"
           << "plot '" << csv_path << "' using 1:3 with lines lw 1 title 'train', "
           << "'' using 1:4 with linespoints lw 2 pt 7 ps 0.6 title 'validation'\n";
  }
  std::string command = "gnuplot '" + script_path + "' >/dev/null 2>&1";
  int rc = std::system(command.c_str());
  std::remove(script_path.c_str());
  if (rc != 0) return "gnuplot failed to draw " + png_path + " (run: gnuplot " + script_path + " to see why)";
  return "";
}

}  // namespace tg
