// Progress reporting: the status line printed every --log-every steps, a live bar redrawn on
// every step when stdout is a terminal, and durations written for people ("3m07s").
#pragma once
#include <cstdint>
#include <string>

namespace tg {

std::string format_duration(double seconds);  // "850ms", "42s", "3m07s", "2h05m"
std::string format_count(double value);       // "12,345"

struct StepReport {
  int64_t step = 0, total_steps = 0;
  double loss = 0, lr = 0;
  double ms_per_step = 0, examples_per_second = 0;
  std::string example_unit = "tok";  // what the task counts: "tok", "img"
  double peak_fraction = -1;  // model FLOP/s over the machine's peak; < 0 when unknown
  double eta_seconds = 0;
  int world_size = 1;               // ranks training together (examples_per_second counts them all)
  double comm_wait_fraction = -1;   // share of the time spent waiting on the other ranks; < 0: alone
};

// "step   120/2000 | loss 2.3456 | lr 1.00e-03 | 85.3 ms/step | 9,012 tok/s | MFU 12.3% | ETA 2m41s"
// (img/s for an image task); with several ranks "| 2 ranks, comm wait 3.1%" before the ETA
std::string status_line(const StepReport& report);

class ProgressBar {
 public:
  ProgressBar();  // live only when stdout is a terminal
  // Redraws the bar in place, at most ten times a second: cheap enough to call every step.
  void update(int64_t step, int64_t total, double eta_seconds);
  // Clears the bar so that a normal line can be printed where it was.
  void clear();
  bool live() const { return live_; }

 private:
  bool live_;
  bool drawn_ = false;
  double last_draw_ = -1;  // seconds on a steady clock
};

}  // namespace tg
