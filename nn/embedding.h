// Embedding: a lookup table, ids (...) -> rows of weight (..., C).
#pragma once
#include <cstdint>

#include "autograd/functions/embedding.h"
#include "nn/init.h"
#include "nn/module.h"

namespace tg {

class Embedding : public Module {
 public:
  // PyTorch's default init: weight N(0, 1) from `gen` (the default generator when null).
  Embedding(int64_t num_embeddings, int64_t embedding_dim, Generator* gen = nullptr) {
    TG_CHECK(num_embeddings > 0 && embedding_dim > 0,
             "Embedding: num_embeddings and embedding_dim must be positive, found " + std::to_string(num_embeddings) +
                 " and " + std::to_string(embedding_dim));
    weight = register_parameter("weight", Tensor::empty({num_embeddings, embedding_dim}));
    init::normal_(weight, 0.0f, 1.0f, gen ? *gen : default_generator());
  }

  Tensor forward(const Tensor& ids) const { return embedding(ids, weight); }  // ids i32 (...) -> (..., C)

  int64_t num_embeddings() const { return weight.size(0); }
  int64_t embedding_dim() const { return weight.size(1); }

  Tensor weight;  // (num_embeddings, embedding_dim)
};

}  // namespace tg
