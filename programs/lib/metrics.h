// The run's metrics.csv (one row per status line and per validation) and its loss.png plot.
#pragma once
#include <cstdint>
#include <limits>
#include <string>

namespace tg {

struct MetricsRow {
  int64_t step = 0;
  double time_seconds = 0;
  double train_loss = std::numeric_limits<double>::quiet_NaN();  // NaN: not measured at this row
  double val_loss = std::numeric_limits<double>::quiet_NaN();
  double lr = 0;
  double tokens_per_second = 0;
};

class MetricsLog {
 public:
  // Starts metrics.csv afresh, or on resume keeps the rows up to `resume_step` and drops the ones a
  // stopped run wrote after its last checkpoint (the resumed run writes them again).
  MetricsLog(const std::string& path, bool resume, int64_t resume_step);
  void append(const MetricsRow& row);  // flushed at once: a killed run keeps its metrics
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Draws train and validation loss against step from metrics.csv into png_path with gnuplot.
// Returns "" on success, otherwise a one-line reason (gnuplot missing and how to install it).
std::string plot_losses(const std::string& csv_path, const std::string& png_path);

}  // namespace tg
