#include "dist/zero_adamw.h"

#include <cmath>
#include <cstring>
#include <map>

#include "autograd/engine.h"
#include "ops/optim.h"
#include "optim/adamw.h"

namespace tg::dist {

// AdamW's checkpoint names (optim/adamw.h), so that either optimizer loads the other's state.
static std::string state_name(const char* which, size_t g, size_t i) {
  return std::string("adamw.") + which + "." + std::to_string(g) + "." + std::to_string(i);
}
static std::string steps_name(size_t g) { return "adamw.steps." + std::to_string(g); }
static const char* const kStepName = "adamw.step";

static bool is_half(DType dtype) { return dtype == DType::BF16 || dtype == DType::F16; }

ZeroAdamW::ZeroAdamW(std::vector<ParamGroup> groups, DataParallel& ddp, float lr, float beta1, float beta2, float eps,
                     uint64_t seed)
    : groups_(std::move(groups)), ddp_(&ddp), lr_(lr), beta1_(beta1), beta2_(beta2), eps_(eps), seed_(seed) {
  AdamW check(groups_, lr, beta1, beta2, eps);  // AdamW's argument checks, with its messages
  for (const DataParallel::Bucket& bucket : ddp.buckets())
    if (!bucket.shard.defined())
      throw Error("ZeroAdamW: the DataParallel was built without shard_gradients (its buckets are all-reduced, "
                  "not reduce-scattered)");
  for (const ParamGroup& group : groups_) steps_.emplace_back(group.params.size(), 0);
  init_pieces();
}

void ZeroAdamW::init_pieces() {
  std::map<const TensorImpl*, std::pair<size_t, size_t>> where;  // parameter -> (group, index)
  for (size_t g = 0; g < groups_.size(); g++)
    for (size_t i = 0; i < groups_[g].params.size(); i++) where[groups_[g].params[i].impl_ptr()] = {g, i};
  size_t found = 0;
  const int64_t rank = ddp_->communicator().rank(), world = ddp_->communicator().world_size();
  const auto& buckets = ddp_->buckets();
  for (size_t b = 0; b < buckets.size(); b++) {
    const DataParallel::Bucket& bucket = buckets[b];
    const int64_t chunk = bucket.buffer.numel() / world, lo = rank * chunk, hi = lo + chunk;
    for (size_t k = 0; k < bucket.params.size(); k++) {
      auto it = where.find(bucket.params[k].impl_ptr());
      if (it == where.end())
        throw Error("ZeroAdamW: " + bucket.names[k] + " is in the DataParallel's buckets but in no parameter group");
      found++;
      const int64_t begin = bucket.offsets[k], end = begin + bucket.params[k].numel();
      const int64_t from = std::max(lo, begin), to = std::min(hi, end);
      if (from >= to) continue;
      Piece piece;
      piece.bucket = b;
      piece.group = it->second.first;
      piece.index = it->second.second;
      piece.start = from - begin;
      piece.length = to - from;
      piece.chunk_offset = from - lo;
      piece.m = Tensor::zeros({piece.length}, DType::F32, bucket.buffer.device());
      piece.v = Tensor::zeros({piece.length}, DType::F32, bucket.buffer.device());
      if (bucket.buffer.dtype() == DType::BF16) {
        piece.master_low = ops::exact_bf16_master_low(flat_param(piece));
      } else if (is_half(bucket.buffer.dtype())) {
        piece.master = Tensor::empty({piece.length}, DType::F32, bucket.buffer.device());
        piece.master.copy_(flat_param(piece));
      }
      pieces_.push_back(std::move(piece));
    }
  }
  if (found != where.size())
    throw Error("ZeroAdamW: " + std::to_string(where.size() - found) +
                " parameter(s) of the groups are not in the DataParallel's buckets (another model?)");
}

Tensor ZeroAdamW::flat_param(const Piece& piece) const {
  return groups_[piece.group].params[piece.index].reshape({-1}).narrow(0, piece.start, piece.length);
}

void ZeroAdamW::set_lr(float lr) {
  check_non_negative("AdamW", "lr", lr);
  lr_ = lr;
}

void ZeroAdamW::zero_grad() {
  for (const ParamGroup& group : groups_)
    for (const Tensor& p : group.params) {
      Tensor grad = p.grad();
      if (grad.defined()) grad.zero_();
    }
}

void ZeroAdamW::step() {
  NoGrad no_grad;
  step_count_++;
  // Every parameter has a gradient (a view into its bucket), so each counts every step, as in AdamW.
  for (auto& counts : steps_)
    for (int64_t& count : counts) count++;
  const auto& buckets = ddp_->buckets();
  std::vector<ops::AdamWParam> updates;
  for (Piece& piece : pieces_) {
    ops::AdamWParam u;
    u.param = flat_param(piece);
    u.grad = buckets[piece.bucket].shard.narrow(0, piece.chunk_offset, piece.length);
    u.master = piece.master;
    u.master_low = piece.master_low;
    u.m = piece.m;
    u.v = piece.v;
    u.weight_decay = groups_[piece.group].weight_decay;
    u.step = steps_[piece.group][piece.index];
    updates.push_back(u);
  }
  ops::AdamWSettings settings;
  settings.lr = lr_;
  settings.beta1 = beta1_;
  settings.beta2 = beta2_;
  settings.eps = eps_;
  if (!updates.empty()) ops::adamw_update(updates, settings);

  // Every rank's chunks, updated, to every rank: one all-gather per bucket, all in flight together.
  Communicator& comm = ddp_->communicator();
  const int64_t world = comm.world_size();
  std::vector<Tensor> sends, gathered;
  std::vector<Work> works;
  for (size_t b = 0; b < buckets.size(); b++) {
    const Tensor& buffer = buckets[b].buffer;
    sends.push_back(Tensor::zeros({buffer.numel() / world}, buffer.dtype(), buffer.device()));
    gathered.push_back(Tensor::empty({buffer.numel()}, buffer.dtype(), buffer.device()));
  }
  for (const Piece& piece : pieces_) sends[piece.bucket].narrow(0, piece.chunk_offset, piece.length).copy_(flat_param(piece));
  for (size_t b = 0; b < buckets.size(); b++)
    works.push_back(comm.all_gather_async(sends[b], gathered[b], "updated parameters of bucket " + std::to_string(b)));
  for (size_t b = 0; b < buckets.size(); b++) {
    works[b].wait();
    for (size_t k = 0; k < buckets[b].params.size(); k++) {
      Tensor flat = buckets[b].params[k].reshape({-1});
      flat.copy_(gathered[b].narrow(0, buckets[b].offsets[k], flat.numel()));
    }
  }
}

float ZeroAdamW::clip_grad_norm(float max_norm) {
  if (!(max_norm >= 0.0f)) throw Error("ZeroAdamW::clip_grad_norm: max_norm must be >= 0, got " + std::to_string(max_norm));
  NoGrad no_grad;
  std::vector<Tensor> shards;
  for (const DataParallel::Bucket& bucket : ddp_->buckets()) shards.push_back(bucket.shard);
  // Each rank's sum of squares travels as its 8 bytes (two i32), so the ranks add the same doubles
  // in the same order: one norm everywhere, and no rounding to f32 before the sum.
  double mine = ops::sum_of_squares(shards);
  Communicator& comm = ddp_->communicator();
  Tensor local = Tensor::empty({2}, DType::I32, Device::cpu());
  std::memcpy(local.data_raw(), &mine, sizeof(mine));
  Tensor all = Tensor::empty({2 * static_cast<int64_t>(comm.world_size())}, DType::I32, Device::cpu());
  comm.all_gather(local, all, "the gradient shards' sums of squares");
  double total = 0;
  for (int r = 0; r < comm.world_size(); r++) {
    double sum;
    std::memcpy(&sum, static_cast<const char*>(all.data_raw()) + r * sizeof(double), sizeof(double));
    total += sum;
  }
  double norm = std::sqrt(total);
  double coef = static_cast<double>(max_norm) / (norm + 1e-6);
  if (coef < 1.0 || std::isnan(coef)) ops::scale_(shards, static_cast<float>(coef));
  return static_cast<float>(norm);
}

std::vector<std::pair<std::string, Tensor>> ZeroAdamW::state_tensors() const {
  Communicator& comm = ddp_->communicator();
  const int64_t world = comm.world_size();
  const auto& buckets = ddp_->buckets();
  // Per bucket and kind (m, v, master): this rank's chunk, then the whole bucket's.
  const char* const kinds[] = {"m", "v", "master"};
  std::vector<std::vector<Tensor>> full(buckets.size());
  std::vector<Work> works;
  std::vector<Tensor> sends;
  for (size_t b = 0; b < buckets.size(); b++) {
    const Tensor& buffer = buckets[b].buffer;
    size_t count = is_half(buffer.dtype()) ? 3 : 2;
    for (size_t k = 0; k < count; k++) {
      Tensor send = Tensor::zeros({buffer.numel() / world}, DType::F32, buffer.device());
      for (const Piece& piece : pieces_) {
        if (piece.bucket != b) continue;
        const Tensor value = k == 0 ? piece.m
                             : k == 1 ? piece.v
                             : piece.master_low.defined() ? ops::join_bf16_master(flat_param(piece), piece.master_low)
                                                          : piece.master;
        send.narrow(0, piece.chunk_offset, piece.length).copy_(value);
      }
      full[b].push_back(Tensor::empty({buffer.numel()}, DType::F32, buffer.device()));
      sends.push_back(send);
      works.push_back(comm.all_gather_async(sends.back(), full[b].back(),
                                            std::string("AdamW ") + kinds[k] + " of bucket " + std::to_string(b)));
    }
  }
  for (const Work& work : works) work.wait();

  std::map<const TensorImpl*, std::pair<size_t, size_t>> where;  // parameter -> (bucket, position)
  for (size_t b = 0; b < buckets.size(); b++)
    for (size_t k = 0; k < buckets[b].params.size(); k++) where[buckets[b].params[k].impl_ptr()] = {b, k};
  std::vector<std::pair<std::string, Tensor>> out;
  out.emplace_back(kStepName, Tensor::from_ints({static_cast<int32_t>(step_count_)}, {}));
  for (size_t g = 0; g < groups_.size(); g++) {
    std::vector<int32_t> steps;
    for (size_t i = 0; i < groups_[g].params.size(); i++) {
      const Tensor& param = groups_[g].params[i];
      auto [b, k] = where.at(param.impl_ptr());
      for (size_t kind = 0; kind < full[b].size(); kind++) {
        Tensor t = Tensor::empty(param.shape(), DType::F32, param.device());
        t.copy_(full[b][kind].narrow(0, buckets[b].offsets[k], param.numel()).view(param.shape()));
        out.emplace_back(state_name(kinds[kind], g, i), t);
      }
      steps.push_back(static_cast<int32_t>(steps_[g][i]));
    }
    out.emplace_back(steps_name(g), Tensor::from_ints(steps, {static_cast<int64_t>(steps.size())}));
  }
  return out;
}

void ZeroAdamW::load_state_tensors(const SafetensorsData& data) {
  // AdamW reads and checks the whole state (and copies masters into f32 parameters); this rank
  // keeps its pieces of it. The whole state is held once, while loading.
  AdamW whole(groups_, lr_, beta1_, beta2_, eps_);
  whole.load_state_tensors(data);
  std::map<std::string, Tensor> state;
  for (auto& [name, tensor] : whole.state_tensors()) state[name] = tensor;
  std::vector<std::vector<int64_t>> steps(groups_.size());
  for (size_t g = 0; g < groups_.size(); g++)
    for (int32_t count : state.at(steps_name(g)).to_int_vector()) steps[g].push_back(count);
  NoGrad no_grad;
  for (Piece& piece : pieces_) {
    auto part = [&](const char* which) {
      return state.at(state_name(which, piece.group, piece.index)).reshape({-1}).narrow(0, piece.start, piece.length);
    };
    piece.m.copy_(part("m"));
    piece.v.copy_(part("v"));
    // The parameters already hold the masters' rounding: `whole` put it there.
    if (piece.master.defined()) piece.master.copy_(part("master"));
    if (piece.master_low.defined()) piece.master_low = ops::split_bf16_master(part("master"), piece.m.device()).second;
  }
  steps_ = std::move(steps);
  step_count_ = whole.step_count();
}

size_t ZeroAdamW::local_state_bytes() const {
  size_t bytes = 0;
  for (const Piece& piece : pieces_)
    bytes += piece.m.nbytes() + piece.v.nbytes() + (piece.master.defined() ? piece.master.nbytes() : 0) +
             (piece.master_low.defined() ? piece.master_low.nbytes() : 0);
  return bytes;
}

size_t ZeroAdamW::unsharded_state_bytes() const {
  size_t bytes = 0;
  for (const ParamGroup& group : groups_)
    for (const Tensor& p : group.params)
      bytes += static_cast<size_t>(p.numel()) * (p.dtype() == DType::BF16 ? 10 : p.dtype() == DType::F16 ? 12 : 8);
  return bytes;
}

}  // namespace tg::dist
