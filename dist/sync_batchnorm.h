// Synchronised BatchNorm (./train --sync-bn): in training, every rank normalises with the
// statistics of the whole global batch instead of its own rows, so N ranks at --batch B compute
// what one process computes at --batch N*B, BatchNorm included (PyTorch's SyncBatchNorm).
//
// Forward: each rank takes its rows' per-channel mean and sum of squared deviations in double
// (ops::batchnorm_moments), the ranks exchange them (an all-gather) and every rank merges them in
// rank order (Chan et al.'s pairwise update: exact up to rounding, no E[x^2] - E[x]^2
// cancellation), then normalises its rows and updates the running statistics with the merged
// ones. Backward: the gradient sums sum(g) and sum(g * (x - mean)) are exchanged the same way and
// added, so dx flows through the global statistics; the weight and bias gradients stay each rank's
// own (DataParallel averages them with the others).
//
// Each layer's forward and backward are collectives: every rank runs the same layers in the same
// order, which data-parallel training does.
#pragma once
#include "dist/communicator.h"
#include "nn/module.h"

namespace tg::dist {

// batch_norm (autograd/functions/batchnorm.h) in training mode over the rows of every rank's x:
// x (..., C) f32, bf16 or f16 on the CPU, weight and bias (C) of x's dtype or undefined,
// running_mean and running_var (C) f32 updated in place (or both undefined). Needs at least 2 rows
// over all ranks.
Tensor sync_batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                       Tensor running_var, float momentum, float eps, bool relu, Communicator& comm);

// Every BatchNorm2d in `model` normalises with sync_batch_norm over `comm`'s ranks in training (its
// synced_norm); `comm` must outlive the model's use. Returns how many layers it converted.
int convert_sync_batchnorm(Module& model, Communicator& comm);

}  // namespace tg::dist
