#!/usr/bin/python3
"""How far PyTorch itself lands from the float64 GPT fixture when the whole tiny GPT runs in bf16
(norm-wise and largest element) and in float32 (largest element): the yardstick for the
tolerances in tests/test_cuda_gpt.cpp.

Same model and data as make_gpt_fixture.py; every parameter and activation is bf16 (as in
tilegrad's --dtype bf16, where the parameters themselves are bf16 and only the optimizer keeps f32
masters), while PyTorch's CPU kernels accumulate matmuls and reductions in f32, as ours do.

Run:  /usr/bin/python3 tests/reference/measure_half_error.py
"""
import json
import os
import struct
import sys

try:
    import torch
except ImportError as missing:  # the yardsticks are not part of `make deps`
    sys.exit(f"{os.path.basename(__file__)}: {missing.name} is not installed; `make deps-bench` installs it")

import make_gpt_fixture as fx


def stored_loss(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        begin, end = header["loss"]["data_offsets"]
        f.seek(8 + n + begin)
        return struct.unpack("<f", f.read(end - begin))[0]


def main():
    torch.manual_seed(fx.SEED)
    cfg, shapes = fx.CONFIG, fx.parameter_shapes(fx.CONFIG)
    initial = {name: fx.init_parameter(name, shape).float().double() for name, shape in shapes}
    idx = torch.randint(0, cfg["vocab_size"], (fx.BATCH, fx.SEQ))
    targets = torch.randint(0, cfg["vocab_size"], (fx.BATCH, fx.SEQ))
    targets[0, 3] = -1
    targets[2, fx.SEQ - 1] = -1
    ref_logits, ref_loss, ref_grads, ref_losses = fx.run(initial, idx, targets, shapes, cfg, torch.float64)
    # This must replay the fixture's draws exactly: the stored loss has to come out again.
    stored = stored_loss(os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpt_tiny.safetensors"))
    assert abs(stored - ref_loss.item()) < 1e-6, (stored, ref_loss.item())

    params = {name: torch.nn.Parameter(initial[name].to(torch.bfloat16)) for name, _ in shapes}
    logits = fx.forward(params, idx, cfg)
    loss = fx.loss_of(logits.float(), targets)
    loss.backward()
    grads = {name: p.grad.detach() for name, p in params.items()}
    worst = max(fx.relative_error(grads[n], ref_grads[n]) for n, _ in shapes)
    median = sorted(fx.relative_error(grads[n], ref_grads[n]) for n, _ in shapes)[len(shapes) // 2]
    print(f"torch bf16 vs float64 relative errors: logits {fx.relative_error(logits, ref_logits):.1e}, "
          f"loss {fx.relative_error(loss, ref_loss):.1e}, worst gradient {worst:.1e}, median gradient {median:.1e} "
          f"(reference loss {ref_loss.item():.6f})")
    # The element-wise yardstick of tests/test_cuda_gpt.cpp: the largest element's error relative
    # to the tensor's largest reference element, max |ours - ref| / max |ref|, in bf16 and float32.
    print(f"torch bf16 vs float64 max-element errors: logits {max_element_error(logits, ref_logits):.1e}, "
          f"worst gradient {max(max_element_error(grads[n], ref_grads[n]) for n, _ in shapes):.1e}")
    params = {name: torch.nn.Parameter(initial[name].to(torch.float32)) for name, _ in shapes}
    logits = fx.forward(params, idx, cfg)
    fx.loss_of(logits, targets).backward()
    print(f"torch float32 vs float64 max-element errors: logits {max_element_error(logits, ref_logits):.1e}, "
          f"worst gradient {max(max_element_error(params[n].grad, ref_grads[n]) for n, _ in shapes):.1e}")


def max_element_error(ours, ref):
    ours, ref = ours.detach().double(), ref.double()
    return ((ours - ref).abs().max() / ref.abs().max()).item()


if __name__ == "__main__":
    main()
