#!/usr/bin/python3
"""Writes tests/reference/rnn_tiny.safetensors, the PyTorch reference for tests/test_rnn.cpp.

Two 2-layer recurrent networks at small odd sizes (I=5, H=7, T=6, B=3):
  lstm  time-major (T, B, I), with given initial states h0 and c0
  gru   batch_first (B, T, I), initial state omitted (zeros)
The loss is a weighted sum over everything the module returns,
  L = sum(output * w_output) + sum(h_n * w_h_n) [+ sum(c_n * w_c_n)],
with fixed random weights, so every output element matters with its own weight.

Everything runs in float64 and is stored as float32 (the parameters and inputs are rounded to
float32 first), so the reference carries no float32 rounding of its own: the differences the C++
test sees are tilegrad's alone.

Contents, for each prefix P in (lstm, gru) (all f32):
  P.<parameter>        weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, ..._l1: PyTorch's names
  P.x                  the input
  P.h0, P.c0           the initial states (lstm only)
  P.output, P.h_n, P.c_n   what the module returns (c_n: lstm only)
  P.w_output, P.w_h_n, P.w_c_n   the loss weights
  P.grad.<parameter>, P.grad.x, P.grad.h0, P.grad.c0   dL / d(that tensor)

Run:  /usr/bin/python3 tests/reference/make_rnn_fixture.py   (Debian's python3-torch is enough)
"""
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_gpt_fixture import relative_error, write_safetensors  # noqa: E402  (one safetensors writer)

I, H, LAYERS, T, B = 5, 7, 2, 6, 3
SEED = 20261215
DTYPE = torch.float64


def f32_round(t):
    return t.float().double()


def run(kind, cls, batch_first, with_state, dtype, state=None):
    """Builds the module (or loads `state`), runs forward and backward; returns everything."""
    torch.manual_seed(SEED + (0 if kind == "lstm" else 1))
    model = cls(I, H, num_layers=LAYERS, batch_first=batch_first).to(DTYPE)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(f32_round(p))
    x = f32_round(torch.randn(B, T, I) if batch_first else torch.randn(T, B, I))
    inputs = {"x": x}
    if with_state:
        inputs["h0"] = f32_round(0.5 * torch.randn(LAYERS, B, H))
        if kind == "lstm":
            inputs["c0"] = f32_round(torch.randn(LAYERS, B, H))
    out_shape = (B, T, H) if batch_first else (T, B, H)
    weights = {"w_output": f32_round(torch.randn(*out_shape)), "w_h_n": f32_round(torch.randn(LAYERS, B, H))}
    if kind == "lstm":
        weights["w_c_n"] = f32_round(torch.randn(LAYERS, B, H))
    if state is not None:
        model.load_state_dict(state)
    model = model.to(dtype)
    leaves = {k: v.to(dtype).requires_grad_() for k, v in inputs.items()}
    if kind == "lstm":
        state_arg = (leaves["h0"], leaves["c0"]) if with_state else None
        output, (h_n, c_n) = model(leaves["x"], state_arg)
    else:
        output, h_n = model(leaves["x"], leaves.get("h0"))
        c_n = None
    loss = (output * weights["w_output"].to(dtype)).sum() + (h_n * weights["w_h_n"].to(dtype)).sum()
    if c_n is not None:
        loss = loss + (c_n * weights["w_c_n"].to(dtype)).sum()
    loss.backward()
    results = {"output": output, "h_n": h_n}
    if c_n is not None:
        results["c_n"] = c_n
    grads = {n: p.grad for n, p in model.named_parameters()}
    grads.update({k: v.grad for k, v in leaves.items()})
    return model, inputs, weights, results, grads


def main():
    f32 = lambda t: t.detach().to(torch.float32).contiguous()
    tensors, yardstick = [], []
    for kind, cls, batch_first, with_state in (("lstm", nn.LSTM, False, True), ("gru", nn.GRU, True, False)):
        model, inputs, weights, results, grads = run(kind, cls, batch_first, with_state, DTYPE)
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        tensors += [(f"{kind}.{n}", f32(v)) for n, v in state.items()]
        tensors += [(f"{kind}.{n}", f32(v)) for n, v in inputs.items()]
        tensors += [(f"{kind}.{n}", f32(v)) for n, v in weights.items()]
        tensors += [(f"{kind}.{n}", f32(v)) for n, v in results.items()]
        tensors += [(f"{kind}.grad.{n}", f32(g)) for n, g in grads.items()]
        # How far PyTorch's own float32 lands from this float64 reference: the yardstick the
        # tolerances of tests/test_rnn.cpp are compared with.
        _, _, _, results32, grads32 = run(kind, cls, batch_first, with_state, torch.float32, state)
        worst_out = max(relative_error(results32[n], results[n]) for n in results)
        worst_grad = max(relative_error(grads32[n], grads[n]) for n in grads)
        yardstick.append(f"{kind}: outputs {worst_out:.1e}, gradients {worst_grad:.1e}")

    metadata = {
        "input_size": str(I), "hidden_size": str(H), "num_layers": str(LAYERS), "steps": str(T), "batch": str(B),
        "seed": str(SEED), "lstm_layout": "time-major, h0 and c0 given", "gru_layout": "batch_first, no h0",
        "reference_dtype": "float64 (stored as float32)", "torch_version": torch.__version__,
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rnn_tiny.safetensors")
    write_safetensors(path, tensors, metadata)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    print("torch float32 vs float64 relative errors, worst tensor: " + "; ".join(yardstick))


if __name__ == "__main__":
    main()
