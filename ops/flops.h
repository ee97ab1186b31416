// FLOP counting at the fronts: while a FlopCounter is alive on a thread, the matrix-product fronts
// (matmul, linear, and conv2d) add the multiply-add FLOPs (2 per multiply-add) of every call made
// from that thread. A trainer learns a model's forward FLOPs per example by running one example
// under a counter, instead of keeping a second, hand-written formula per architecture that could
// drift from the code. Elementwise, normalisation and pooling work is not counted: MFU, by
// convention (PaLM, appendix B), counts the matrix products.
#pragma once

namespace tg::ops {

class FlopCounter {
 public:
  FlopCounter();   // becomes this thread's active counter (counters nest; the innermost counts)
  ~FlopCounter();  // the previous counter, if any, is active again
  FlopCounter(const FlopCounter&) = delete;
  FlopCounter& operator=(const FlopCounter&) = delete;

  double flops() const { return flops_; }

 private:
  friend void count_flops(double flops);
  double flops_ = 0;
  FlopCounter* previous_;
};

// Called by the fronts: adds `flops` to this thread's active counter; nothing without one.
void count_flops(double flops);

}  // namespace tg::ops
