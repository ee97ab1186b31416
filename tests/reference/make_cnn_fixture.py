#!/usr/bin/python3
"""Writes tests/reference/cnn_tiny.safetensors, the PyTorch reference for tests/test_cnn_parity.cpp.

A tiny CNN with every layer of the CNN path: convolutions with and without bias (3x3 pad 1, a
non-square 1x3 with bias, a stride-2 3x3), BatchNorm2d in training mode, ReLU, max pooling (odd input, so the
floor drops a row), a residual block (conv-BN-ReLU-conv-BN, identity shortcut, ReLU), average
pooling with padding, global average pooling, flatten and a linear classifier. The network is
written with torch.nn modules whose names are the state-dict names tilegrad's modules use.

Everything runs in float64 and is stored as float32, so the reference carries no float32 rounding
of its own: the differences the C++ test sees are tilegrad's alone.

Contents (all f32 unless said):
  <name>                  every parameter and buffer at the start (running_mean 0, running_var 1)
  x                       (N, H, W, C) the input batch in tilegrad's NHWC layout (PyTorch ran it as NCHW)
  y                       i32 (N) class labels
  logits                  (N, CLASSES) in training mode (batch statistics)
  loss                    () mean cross entropy
  loss_smoothed           () the same logits' cross entropy with label_smoothing = SMOOTHING
  grad.<parameter>        d loss / d parameter
  after1.<bn buffer>      running_mean, running_var of every BatchNorm after that one forward
  sgd_losses              (STEPS,) the training-mode loss of each SGD step (Nesterov, weight decay), same batch
  eval_loss_after         () the eval-mode loss (running statistics) after the STEPS steps
The metadata records the shapes and every hyperparameter.

Run:  /usr/bin/python3 tests/reference/make_cnn_fixture.py   (Debian's python3-torch is enough)
"""
import os
import sys

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as missing:  # the yardsticks are not part of `make deps`
    sys.exit(f"{os.path.basename(__file__)}: {missing.name} is not installed; `make deps-bench` installs it")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_gpt_fixture import relative_error, write_safetensors  # noqa: E402  (one safetensors writer)

N, C, H, W, CLASSES = 4, 3, 9, 11, 5
SEED = 20261205
STEPS = 10
LR, MOMENTUM, WEIGHT_DECAY = 0.05, 0.9, 5e-4
BN_EPS, BN_MOMENTUM = 1e-5, 0.1
SMOOTHING = 0.1
DTYPE = torch.float64


class Residual(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x):
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(C, 6, 3, padding=1, bias=False)      # (9, 11) -> (9, 11)
        self.bn1 = nn.BatchNorm2d(6, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(6, 7, (1, 3), padding=(0, 1))          # non-square kernel, with bias
        self.block = Residual(7)                                       # after max pool 2: (4, 5)
        self.conv3 = nn.Conv2d(7, 8, 3, stride=2, padding=1, bias=False)  # (4, 5) -> (2, 3); a bias
        # before BatchNorm would get an exactly-zero gradient, which no relative error can judge
        self.bn3 = nn.BatchNorm2d(8, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.fc = nn.Linear(8, CLASSES)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(self.conv2(x), 2)
        x = self.block(x)
        x = F.relu(self.bn3(self.conv3(x)))
        x = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=True)  # (2, 3) -> (2, 3)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def bn_buffers(model):
    return [(n, b) for n, b in model.named_buffers() if not n.endswith("num_batches_tracked")]


def main():
    torch.manual_seed(SEED)
    model = TinyCNN().to(DTYPE)
    with torch.no_grad():
        # BatchNorm's affine terms away from ones/zeros, so a mix-up of weight and bias shows.
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1.0 + 0.2 * torch.randn_like(m.weight))
                m.bias.copy_(0.2 * torch.randn_like(m.bias))
        for p in model.parameters():  # rounded to float32: the C++ test starts from the stored values
            p.copy_(p.float().double())
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}

    x = (1.5 * torch.randn(N, C, H, W) + 0.3).float().double()
    y = torch.randint(0, CLASSES, (N,))

    model.train()
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss_smoothed = F.cross_entropy(logits, y, label_smoothing=SMOOTHING)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    after1 = {n: b.detach().clone() for n, b in bn_buffers(model)}

    model.load_state_dict(initial)
    model.zero_grad(set_to_none=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True,
                                weight_decay=WEIGHT_DECAY)
    sgd_losses = []
    for _ in range(STEPS):
        optimizer.zero_grad(set_to_none=True)
        step_loss = F.cross_entropy(model(x), y)
        step_loss.backward()
        optimizer.step()
        sgd_losses.append(step_loss.item())
    model.eval()
    with torch.no_grad():
        eval_loss_after = F.cross_entropy(model(x), y)

    f32 = lambda t: t.detach().to(torch.float32)
    tensors = []
    for name, value in initial.items():
        if name.endswith("num_batches_tracked"):
            continue  # 0 at the start; the test checks tilegrad's counter itself
        tensors.append((name, f32(value)))
    tensors += [("x", f32(x.permute(0, 2, 3, 1))), ("y", y.to(torch.int32)), ("logits", f32(logits)),
                ("loss", f32(loss)), ("loss_smoothed", f32(loss_smoothed))]
    tensors += [("grad." + n, f32(g)) for n, g in grads.items()]
    tensors += [("after1." + n, f32(b)) for n, b in after1.items()]
    tensors += [("sgd_losses", f32(torch.tensor(sgd_losses, dtype=DTYPE))), ("eval_loss_after", f32(eval_loss_after))]

    metadata = {
        "batch": str(N), "channels": str(C), "height": str(H), "width": str(W), "classes": str(CLASSES),
        "seed": str(SEED), "layout_x": "NHWC", "bn_eps": str(BN_EPS), "bn_momentum": str(BN_MOMENTUM),
        "label_smoothing": str(SMOOTHING), "sgd_steps": str(STEPS), "sgd_lr": str(LR),
        "sgd_momentum": str(MOMENTUM), "sgd_nesterov": "true", "sgd_weight_decay": str(WEIGHT_DECAY),
        "sgd_decay_group": "every parameter (PyTorch's SGD default), BatchNorm and biases included",
        "reference_dtype": "float64 (stored as float32)", "torch_version": torch.__version__,
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cnn_tiny.safetensors")
    write_safetensors(path, tensors, metadata)
    print(f"wrote {path} ({os.path.getsize(path)} bytes): loss {loss.item():.6f}, smoothed "
          f"{loss_smoothed.item():.6f}, after {STEPS} SGD steps {sgd_losses[-1]:.6f}, eval {eval_loss_after.item():.6f}")

    # How far PyTorch's own float32 lands from this float64 reference: the yardstick for the
    # tolerances in tests/test_cnn_parity.cpp.
    model32 = TinyCNN()
    model32.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in initial.items()})
    model32.train()
    logits32 = model32(x.float())
    loss32 = F.cross_entropy(logits32, y)
    loss32.backward()
    worst_grad = max(relative_error(p.grad, grads[n]) for n, p in model32.named_parameters())
    worst_stat = max(relative_error(b, after1[n]) for n, b in bn_buffers(model32))
    print(f"torch float32 vs float64 relative errors: logits {relative_error(logits32, logits):.1e}, "
          f"loss {relative_error(loss32, loss):.1e}, worst gradient {worst_grad:.1e}, "
          f"worst running statistic {worst_stat:.1e}")

    # A subtle bug the tolerances must stay well below: BatchNorm normalising with the unbiased
    # variance (PyTorch's running statistics use it, the normalisation must not).
    with torch.no_grad():
        h = model32.conv1(x.float()).double()
        mu, biased = h.mean(dim=(0, 2, 3), keepdim=True), h.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        unbiased = h.var(dim=(0, 2, 3), unbiased=True, keepdim=True)
        right, wrong = (h - mu) / torch.sqrt(biased + BN_EPS), (h - mu) / torch.sqrt(unbiased + BN_EPS)
    print(f"subtle bug, relative error of the first BatchNorm's output with the unbiased variance: "
          f"{relative_error(wrong, right):.1e}")

if __name__ == "__main__":
    main()
