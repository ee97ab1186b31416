// Dropout: in training, zeroes each element with probability p and scales the rest by 1/(1-p);
// in evaluation (eval()) it is the identity.
#pragma once
#include <string>

#include "autograd/functions/dropout.h"
#include "nn/module.h"

namespace tg {

class Dropout : public Module {
 public:
  // Masks come from `gen` (the default generator when null); pass one to make runs reproducible
  // independently of other random draws.
  explicit Dropout(float p = 0.0f, Generator* gen = nullptr) : p(p), gen_(gen) {
    TG_CHECK(p >= 0.0f && p < 1.0f, "Dropout: p must be in [0, 1), found " + std::to_string(p));
  }

  Tensor forward(const Tensor& x) const {
    if (is_identity()) return x;  // no pass over the data, no random draws
    return dropout(x, p, true, gen_);
  }

  // True when forward() is the identity (evaluation, or p == 0): callers may then fuse what
  // follows the dropout into the op before it.
  bool is_identity() const { return !is_training() || p == 0.0f; }
  float p;

 private:
  Generator* gen_;
};

}  // namespace tg
