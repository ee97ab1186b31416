#include "dist/peer_report.h"

#include <thread>
#include <vector>

namespace tg::dist {

std::string exchange_peer_reports(RendezvousStore& store, const std::string& doing, std::chrono::milliseconds grace) {
  auto key = [](int r) { return "watchdog/rank " + std::to_string(r); };
  const int world = store.world_size(), rank = store.rank();
  store.set(key(rank), doing);
  std::vector<std::string> heard(static_cast<size_t>(world));
  std::vector<bool> posted(static_cast<size_t>(world), false);
  int silent = world - 1;
  const auto deadline = std::chrono::steady_clock::now() + grace;
  for (;;) {
    for (int r = 0; r < world; r++) {
      if (r == rank || posted[r] || !store.check(key(r))) continue;
      heard[r] = store.get(key(r));
      posted[r] = true;
      silent--;
    }
    if (silent == 0 || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::string report;
  for (int r = 0; r < world; r++) {
    if (r == rank) continue;
    report += (report.empty() ? "rank " : "; rank ") + std::to_string(r) + ": " +
              (posted[r] ? "waits in " + heard[r] : "reported nothing (dead, stopped, or not in a collective)");
  }
  return report;
}

}  // namespace tg::dist
