#include "programs/lib/progress.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

namespace tg {

std::string format_duration(double seconds) {
  char buffer[32];
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  if (seconds < 1) std::snprintf(buffer, sizeof(buffer), "%.0fms", seconds * 1000);
  else if (seconds < 60) std::snprintf(buffer, sizeof(buffer), "%.0fs", seconds);
  else if (seconds < 3600) std::snprintf(buffer, sizeof(buffer), "%dm%02ds", int(seconds / 60), int(seconds) % 60);
  else std::snprintf(buffer, sizeof(buffer), "%dh%02dm", int(seconds / 3600), int(seconds / 60) % 60);
  return buffer;
}

std::string format_count(double value) {
  std::string digits = std::to_string(static_cast<long long>(std::llround(value)));
  std::string out;
  int since_comma = 0;
  for (size_t i = digits.size(); i-- > 0;) {
    if (since_comma == 3 && digits[i] != '-') { out.insert(out.begin(), ','); since_comma = 0; }
    out.insert(out.begin(), digits[i]);
    since_comma++;
  }
  return out;
}

std::string status_line(const StepReport& r) {
  char buffer[256];
  int width = static_cast<int>(std::to_string(r.total_steps).size());
  int n = std::snprintf(buffer, sizeof(buffer), "step %*lld/%lld | loss %.4f | lr %.2e | %.1f ms/step | %s %s/s", width,
                        static_cast<long long>(r.step), static_cast<long long>(r.total_steps), r.loss, r.lr,
                        r.ms_per_step, format_count(r.examples_per_second).c_str(), r.example_unit.c_str());
  std::string line(buffer, n);
  if (r.peak_fraction >= 0) {
    // The peak is measured at the start; on a busy machine it comes out low and the MFU above 100%.
    std::snprintf(buffer, sizeof(buffer), r.peak_fraction > 1 ? " | MFU %.1f%% (peak measured low: busy at start)"
                                                               : " | MFU %.1f%%", 100.0 * r.peak_fraction);
    line += buffer;
  }
  if (r.world_size > 1) {
    std::snprintf(buffer, sizeof(buffer), " | %d ranks, comm wait %.1f%%", r.world_size,
                  100.0 * std::max(0.0, r.comm_wait_fraction));
    line += buffer;
  }
  return line + " | ETA " + format_duration(r.eta_seconds);
}

ProgressBar::ProgressBar() : live_(isatty(STDOUT_FILENO) == 1) {}

void ProgressBar::update(int64_t step, int64_t total, double eta_seconds) {
  if (!live_) return;
  double now = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  if (drawn_ && step < total && now - last_draw_ < 0.1) return;
  last_draw_ = now;
  constexpr int kWidth = 30;
  int filled = total > 0 ? static_cast<int>(kWidth * static_cast<double>(step) / static_cast<double>(total)) : 0;
  std::string bar(static_cast<size_t>(std::min(filled, kWidth)), '#');
  bar.resize(kWidth, '.');
  std::printf("\r[%s] %lld/%lld  ETA %s\033[K", bar.c_str(), static_cast<long long>(step),
              static_cast<long long>(total), format_duration(eta_seconds).c_str());
  std::fflush(stdout);
  drawn_ = true;
}

void ProgressBar::clear() {
  if (!live_ || !drawn_) return;
  std::printf("\r\033[K");
  drawn_ = false;
}

}  // namespace tg
