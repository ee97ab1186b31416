// The run's metrics.csv (one row per status line and per evaluation) and its loss.png plot.
//
// Every run has the columns step, time_s, train_loss, val_loss, lr and its throughput (named by
// the task: tokens_per_s, images_per_s); a task adds columns of its own after them
// (val_accuracy, test_accuracy, ...). A cell is empty where the row did not measure it.
#pragma once
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace tg {

struct MetricsRow {
  int64_t step = 0;
  double time_seconds = 0;
  double train_loss = std::numeric_limits<double>::quiet_NaN();  // NaN: not measured at this row
  double val_loss = std::numeric_limits<double>::quiet_NaN();
  double lr = 0;
  double examples_per_second = 0;
  std::map<std::string, double> extra;  // the task's columns; absent or NaN: an empty cell
};

class MetricsLog {
 public:
  // Starts metrics.csv afresh, or on resume keeps the rows up to `resume_step` and drops the ones a
  // stopped run wrote after its last checkpoint (the resumed run writes them again).
  // `throughput_column` names the examples-per-second column; `extra_columns` follow it.
  MetricsLog(const std::string& path, const std::string& throughput_column, std::vector<std::string> extra_columns,
             bool resume, int64_t resume_step);
  // Flushed at once: a killed run keeps its metrics. Throws for a value in a column it lacks.
  void append(const MetricsRow& row);
  const std::string& path() const { return path_; }
  const std::string& header() const { return header_; }

 private:
  std::string path_, header_;
  std::vector<std::string> extra_columns_;
};

// Draws train and validation loss against step from metrics.csv into png_path with gnuplot, the
// y axis labelled "loss (nats per <example>)", and below it a panel of the accuracy columns
// (val_accuracy, test_accuracy) when the file has them. Returns "" on success, otherwise a one-line
// reason (gnuplot missing and how to install it).
std::string plot_losses(const std::string& csv_path, const std::string& png_path, const std::string& example = "token");

}  // namespace tg
