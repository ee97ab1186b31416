// tilegrad: one include for programs and experiments.
//
//   #include "tilegrad.h"
//   tg::GPT model(config, /*seed=*/1337);
//   tg::AdamW optimizer(tg::weight_decay_groups(model.parameters(), 0.1f), 6e-4f, 0.9f, 0.95f);
//   tg::Tensor loss = model.loss(model.forward(idx), targets);
//   tg::backward(loss);
//   optimizer.step();
//
//
//   auto cnn = tg::make_cnn("cnn-ref", /*in_channels=*/1, /*classes=*/10, gen);  // NHWC images in
//   tg::Tensor logits = cnn->forward(images);  // images (N, H, W, C) -> (N, classes)
//
// Library code includes the specific headers it needs instead, which keeps rebuilds small.
#pragma once

// Tensors, dtypes, devices, random numbers, checkpoints.
#include "tensor/tensor.h"
#include "tensor/safetensors.h"
#include "tensor/cuda_allocator.h"

// Autograd: the engine (backward, NoGrad, hooks), gradient checking, differentiable functions.
#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "autograd/functions/activation.h"
#include "autograd/functions/attention.h"
#include "autograd/functions/batchnorm.h"
#include "autograd/functions/blockwise_mlp.h"
#include "autograd/functions/concat.h"
#include "autograd/functions/conv2d.h"
#include "autograd/functions/crossentropy.h"
#include "autograd/functions/dropout.h"
#include "autograd/functions/elementwise.h"
#include "autograd/functions/embedding.h"
#include "autograd/functions/layernorm.h"
#include "autograd/functions/matmul.h"
#include "autograd/functions/pool.h"
#include "autograd/functions/rnn.h"
#include "autograd/functions/reduce.h"
#include "autograd/functions/softmax.h"
#include "autograd/functions/view.h"

// Modules and layers.
#include "nn/module.h"
#include "nn/init.h"
#include "nn/linear.h"
#include "nn/embedding.h"
#include "nn/layernorm.h"
#include "nn/dropout.h"
#include "nn/gelu.h"
#include "nn/sigmoid.h"
#include "nn/silu.h"
#include "nn/feedforward.h"
#include "nn/mlp.h"
#include "nn/swiglu.h"
#include "nn/attention.h"
#include "nn/block.h"
#include "nn/gpt.h"
#include "nn/language_model.h"
#include "nn/lstm_lm.h"
#include "nn/conv2d.h"
#include "nn/batchnorm.h"
#include "nn/pool.h"
#include "nn/flatten.h"
#include "nn/relu.h"
#include "nn/sequential.h"
#include "nn/residual.h"
#include "nn/cnn.h"
#include "nn/rnn.h"
#include "nn/gradcheck.h"

// Optimizers, schedules, clipping.
#include "optim/param_group.h"
#include "optim/adamw.h"
#include "optim/sgd.h"
#include "optim/schedule.h"
#include "optim/clip.h"
#include "optim/grad_scaler.h"
