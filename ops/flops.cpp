#include "ops/flops.h"

namespace tg::ops {

namespace {
thread_local FlopCounter* active = nullptr;
}

FlopCounter::FlopCounter() : previous_(active) { active = this; }

FlopCounter::~FlopCounter() { active = previous_; }

void count_flops(double flops) {
  if (active) active->flops_ += flops;
}

}  // namespace tg::ops
