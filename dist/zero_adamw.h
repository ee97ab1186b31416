// ZeroAdamW: AdamW with its state sharded across the ranks (ZeRO stage 1, Rajbhandari et al.
// 2020). Each rank keeps the moments, and the masters of bf16/f16 parameters (AdamW's forms: a
// bf16 master as the low bits beside the parameter, an f16 one in f32), of one chunk of
// every gradient bucket only: 1/N of AdamW's state per rank.
//
//   DataParallelOptions options;
//   options.shard_gradients = true;                // buckets reduce-scattered
//   DataParallel ddp(model, comm, options);
//   ZeroAdamW optimizer(weight_decay_groups(model.parameters(), wd), ddp, lr, 0.9f, 0.95f);
//   backward(loss); ddp.finish_gradient_sync();  // rank r holds chunk r of each averaged bucket
//   optimizer.clip_grad_norm(1.0f);              // the global norm, from the shards
//   optimizer.step();                            // updates chunk r, then all-gathers the parameters
//
// A chunk is the r-th of N equal parts of a bucket's flat buffer (dist/data_parallel.h), so it
// cuts parameters anywhere: each rank updates the pieces of parameters inside its chunks with
// AdamW's own kernel (ops::adamw_update, the same f32 operations in the same order), then one
// all-gather per bucket gives every rank every updated parameter. Communication per step is the
// same as DataParallel's all-reduce (a reduce-scatter and an all-gather, each half of it).
//
// Checkpoints hold AdamW's tensors under AdamW's names (optim/adamw.h): state_tensors() gathers the
// shards, so a checkpoint loads at any world size, into ZeroAdamW or into AdamW, and
// load_state_tensors() takes this rank's pieces of an AdamW or ZeroAdamW state.
//
// Stochastic rounding is refused: its random bits depend on the element's index in its tensor,
// which a piece does not start at. The gradients are the buckets' shards: the parameters' .grad
// hold this rank's own, un-averaged ones, so clip with clip_grad_norm() here, not optim/clip.h.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "dist/data_parallel.h"
#include "optim/optimizer.h"
#include "optim/param_group.h"

namespace tg::dist {

class ZeroAdamW : public Optimizer {
 public:
  // `ddp` must have been built with shard_gradients and must outlive this; `groups` hold exactly
  // its parameters. Throws tg::Error for bad settings (as AdamW), for a DataParallel without
  // shards, and for a parameter in the groups that is not in its buckets or the other way round.
  ZeroAdamW(std::vector<ParamGroup> groups, DataParallel& ddp, float lr, float beta1 = 0.9f, float beta2 = 0.999f,
            float eps = 1e-8f, uint64_t seed = 0);

  const char* name() const override { return "AdamW (ZeRO-1)"; }
  // Updates this rank's pieces from the averaged shards, then all-gathers the parameters (a
  // collective: every rank calls it).
  void step() override;
  void zero_grad() override;
  void set_lr(float lr) override;
  float lr() const override { return lr_; }
  const std::vector<ParamGroup>& groups() const override { return groups_; }

  // optim/clip.h's clip_grad_norm on the averaged gradients this rank holds (the shards): the
  // squares summed in double per rank, the ranks' sums added in rank order, so every rank gets the
  // same norm and the same factor. A collective. Returns the norm before clipping.
  float clip_grad_norm(float max_norm);

  // AdamW's state_tensors(), the full tensors gathered from every rank's pieces: a collective,
  // every rank calls it and gets the whole state.
  std::vector<std::pair<std::string, Tensor>> state_tensors() const override;
  // This rank's pieces of an AdamW state (written by AdamW or by ZeroAdamW at any world size),
  // checked as AdamW::load_state_tensors checks it; an f32 parameter with a master in `data` takes
  // the master, as there. Every rank reads the same `data`.
  void load_state_tensors(const SafetensorsData& data) override;

  // Bytes of optimizer state this rank holds (moments and masters), and what AdamW would hold.
  size_t local_state_bytes() const;
  size_t unsharded_state_bytes() const;
  size_t state_bytes() const override { return local_state_bytes(); }

 private:
  // A parameter's elements [start, start + length) inside this rank's chunk of bucket `bucket`,
  // at `chunk_offset` in that chunk, and its state.
  struct Piece {
    size_t bucket = 0;
    size_t group = 0, index = 0;  // the parameter in groups_
    int64_t start = 0, length = 0, chunk_offset = 0;
    Tensor m, v;          // f32, `length` elements
    Tensor master;        // f16 parameters: the f32 masters
    Tensor master_low;    // bf16 parameters: the masters as low bits beside the parameter (AdamW's form)
  };

  Tensor flat_param(const Piece& piece) const;  // the piece's elements of its parameter, a view
  void init_pieces();

  std::vector<ParamGroup> groups_;
  DataParallel* ddp_;
  std::vector<Piece> pieces_;
  std::vector<std::vector<int64_t>> steps_;  // [group][index]: each parameter's update count
  float lr_, beta1_, beta2_, eps_;
  uint64_t seed_;
  int64_t step_count_ = 0;
};

}  // namespace tg::dist
