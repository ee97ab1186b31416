// A seeded, reproducible random number generator (xoshiro256**), with its state exposed so that
// checkpoints can save and restore it exactly.
#pragma once
#include <array>
#include <cstdint>

namespace tg {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) { manual_seed(seed); }
  void manual_seed(uint64_t seed);

  uint64_t next_u64();
  float uniform();  // [0, 1), 24 random bits
  float normal();   // standard normal, Box-Muller (uses two uniforms per draw, keeps no cache)
  // Uniform integer in [0, n), without modulo bias.
  uint64_t below(uint64_t n);

  using State = std::array<uint64_t, 4>;
  State state() const { return s_; }
  void set_state(const State& state) { s_ = state; }

 private:
  State s_{};
};

// The process-wide generator used when none is passed.
Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace tg
