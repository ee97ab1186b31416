// LanguageModel: what training on text and sampling need of a model of token sequences, whatever
// its architecture (nn/gpt.h, nn/lstm_lm.h). The text task, sampling and ./generate use only this.
//
//   idx i32 (B, T) -> forward -> logits (B, T, V): position t scores token t + 1 given tokens 0..t
//
// Sampling draws one token at a time, so each architecture supplies a Decoder that keeps what it
// needs between tokens: the GPT its last block_size ids (it recomputes the window), the LSTM its
// (h, c), so that each new token costs one step rather than a pass over the whole context.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "autograd/functions/crossentropy.h"
#include "nn/module.h"

namespace tg {

// Incremental decoding: feed the context, read the logits of the next token, feed the token drawn
// from them, and so on. A decoder reads its model's current weights and must not outlive it; it
// records no graph when run under NoGrad (as sampling does).
class Decoder {
 public:
  virtual ~Decoder() = default;
  // Appends `ids` (at least one) to the context; returns the logits (vocab_size) of the token that
  // follows them, on the model's device and in its dtype.
  virtual Tensor feed(const std::vector<int32_t>& ids) = 0;
};

class LanguageModel : public Module {
 public:
  // idx i32 (B, T), ids in [0, vocab_size) -> logits (B, T, vocab_size).
  virtual Tensor forward(const Tensor& idx) const = 0;
  // Mean cross entropy of logits (B, T, V) against targets i32 (B, T); targets of -1 are ignored.
  virtual Tensor loss(const Tensor& logits, const Tensor& targets) const { return cross_entropy(logits, targets, -1); }
  // The same mean loss of idx's next tokens, forward(idx) and loss(...) in one call, so that a model
  // may compute it without holding every logit (the GPT's chunked output layer, nn/gpt.h).
  virtual Tensor forward_loss(const Tensor& idx, const Tensor& targets) const { return loss(forward(idx), targets); }

  virtual int64_t vocab_size() const = 0;
  // Training FLOPs (forward + backward) per token, for MFU.
  virtual double flops_per_token() const = 0;

  // A fresh decoder with an empty context.
  virtual std::unique_ptr<Decoder> decoder() const = 0;
};

}  // namespace tg
