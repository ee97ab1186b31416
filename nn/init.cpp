#include "nn/init.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace tg::init {

// Runs `fill(float* values, n, block_generator)` on every block of the tensor's elements: in place
// when it is a contiguous CPU f32 tensor, otherwise on a host copy that is then copied in.
template <class Fill>
static void fill_blocks(Tensor& t, Generator& gen, Fill fill) {
  Tensor host = t.device().is_cpu() && t.dtype() == DType::F32 && t.is_contiguous() ? t : Tensor::empty(t.shape());
  float* values = host.data<float>();
  const int64_t n = host.numel(), blocks = (n + kInitBlock - 1) / kInitBlock;
  const uint64_t key = gen.next_u64();
  #pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; b++) {
    // An odd multiplier spreads consecutive block numbers over the seed space; Generator's own
    // splitmix64 seeding then makes the streams unrelated.
    Generator block_gen(key ^ (static_cast<uint64_t>(b + 1) * 0xd1b54a32d192ed03ull));
    int64_t begin = b * kInitBlock;
    fill(values + begin, std::min(kInitBlock, n - begin), block_gen);
  }
  if (host.impl_ptr() != t.impl_ptr()) t.copy_(host);
}

void normal_(Tensor& t, float mean, float std, Generator& gen) {
  fill_blocks(t, gen, [mean, std](float* values, int64_t n, Generator& g) {
    constexpr double kTwoToMinus52 = 1.0 / 4503599627370496.0;
    for (int64_t i = 0; i < n; i += 2) {
      double u, v, s;
      do {  // a uniform point in the unit disc (accepted with probability pi/4)
        u = static_cast<double>(g.next_u64() >> 11) * kTwoToMinus52 - 1.0;
        v = static_cast<double>(g.next_u64() >> 11) * kTwoToMinus52 - 1.0;
        s = u * u + v * v;
      } while (s >= 1.0 || s == 0.0);
      double f = std::sqrt(-2.0 * std::log(s) / s);
      values[i] = mean + std * static_cast<float>(u * f);
      if (i + 1 < n) values[i + 1] = mean + std * static_cast<float>(v * f);
    }
  });
}

void uniform_(Tensor& t, float low, float high, Generator& gen) {
  TG_CHECK(low <= high, "init::uniform_: low " + std::to_string(low) + " is above high " + std::to_string(high));
  fill_blocks(t, gen, [low, high](float* values, int64_t n, Generator& g) {
    for (int64_t i = 0; i < n; i++) values[i] = low + (high - low) * g.uniform();
  });
}

}  // namespace tg::init
