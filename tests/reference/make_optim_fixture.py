#!/usr/bin/env python3
"""Writes tests/reference/optim_fixture.safetensors: PyTorch's SGD and AdamW on two small
parameters for five steps, for tests/test_optim.cpp to match.

Contents (all f32):
  init.<p>              the initial parameters (p0 (3, 5), p1 (7), p2 (5, 13))
  grad.<s>.<p>          the gradient fed at step s = 0..4 (the same sequence for every config)
  <config>.<s>.<p>      the parameter after step s
and metadata "configs": a JSON list describing each config (optimizer, hyperparameters, groups
with their weight decay, and the (step, param) pairs whose gradient is None at that step).

Hyperparameters are rounded to f32 before PyTorch sees them, so both sides use the same values.
The file is written with struct + json, not with tilegrad. torch's single-tensor (foreach=False)
implementations are used: they are the reference formulas.

Run from the repository root:  python3 tests/reference/make_optim_fixture.py
"""
import json
import os
import struct
import sys

try:
    import numpy as np
    import torch
except ImportError as missing:  # the yardsticks are not part of `make deps`
    sys.exit(f"{os.path.basename(__file__)}: {missing.name} is not installed; `make deps-bench` installs it")

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optim_fixture.safetensors")
STEPS = 5
# p2 is big enough for full SIMD vectors plus a ragged end; p0 and p1 fit in one partial vector.
SHAPES = {"p0": (3, 5), "p1": (7,), "p2": (5, 13)}


def f32(x):
    return float(np.float32(x))


CONFIGS = [
    # AdamW: weight decay, other betas and eps, groups with different decay, a skipped gradient.
    dict(name="adamw_wd", optimizer="adamw", lr=0.01, betas=[0.9, 0.999], eps=1e-8,
         groups=[dict(params=["p0", "p1", "p2"], weight_decay=0.1)], skip=[]),
    dict(name="adamw_betas", optimizer="adamw", lr=0.003, betas=[0.8, 0.95], eps=1e-6,
         groups=[dict(params=["p0", "p1", "p2"], weight_decay=0.0)], skip=[]),
    dict(name="adamw_groups", optimizer="adamw", lr=0.02, betas=[0.9, 0.99], eps=1e-8,
         groups=[dict(params=["p0", "p2"], weight_decay=0.1), dict(params=["p1"], weight_decay=0.0)], skip=[]),
    dict(name="adamw_skip", optimizer="adamw", lr=0.01, betas=[0.9, 0.999], eps=1e-8,
         groups=[dict(params=["p0", "p1", "p2"], weight_decay=0.05)], skip=[[0, "p1"], [2, "p1"], [3, "p0"], [4, "p2"]]),
    # SGD: plain, momentum, dampening, Nesterov, weight decay per group, a skipped gradient.
    dict(name="sgd_plain", optimizer="sgd", lr=0.1, momentum=0.0, dampening=0.0, nesterov=False,
         groups=[dict(params=["p0", "p1", "p2"], weight_decay=0.0)], skip=[]),
    dict(name="sgd_momentum", optimizer="sgd", lr=0.05, momentum=0.9, dampening=0.0, nesterov=False,
         groups=[dict(params=["p0", "p1", "p2"], weight_decay=0.0)], skip=[]),
    dict(name="sgd_dampening", optimizer="sgd", lr=0.05, momentum=0.9, dampening=0.5, nesterov=False,
         groups=[dict(params=["p0", "p1", "p2"], weight_decay=0.0)], skip=[]),
    dict(name="sgd_nesterov", optimizer="sgd", lr=0.05, momentum=0.8, dampening=0.0, nesterov=True,
         groups=[dict(params=["p0", "p1", "p2"], weight_decay=0.0)], skip=[]),
    dict(name="sgd_wd_groups", optimizer="sgd", lr=0.05, momentum=0.9, dampening=0.0, nesterov=False,
         groups=[dict(params=["p0", "p2"], weight_decay=0.01), dict(params=["p1"], weight_decay=0.2)], skip=[]),
    dict(name="sgd_skip", optimizer="sgd", lr=0.05, momentum=0.9, dampening=0.3, nesterov=False,
         groups=[dict(params=["p0", "p1", "p2"], weight_decay=0.01)], skip=[[0, "p1"], [2, "p1"]]),
]


def round_config(c):
    c = dict(c)
    for key in ("lr", "eps", "momentum", "dampening"):
        if key in c:
            c[key] = f32(c[key])
    if "betas" in c:
        c["betas"] = [f32(b) for b in c["betas"]]
    c["groups"] = [dict(g, weight_decay=f32(g["weight_decay"])) for g in c["groups"]]
    return c


def run(config, init, grads):
    params = {name: init[name].clone().requires_grad_(True) for name in SHAPES}
    groups = [dict(params=[params[n] for n in g["params"]], weight_decay=g["weight_decay"]) for g in config["groups"]]
    if config["optimizer"] == "adamw":
        opt = torch.optim.AdamW(groups, lr=config["lr"], betas=tuple(config["betas"]), eps=config["eps"],
                                foreach=False)
    else:
        opt = torch.optim.SGD(groups, lr=config["lr"], momentum=config["momentum"], dampening=config["dampening"],
                              nesterov=config["nesterov"], foreach=False)
    skipped = {(s, p) for s, p in config["skip"]}
    out = {}
    for s in range(STEPS):
        for name, p in params.items():
            p.grad = None if (s, name) in skipped else grads[s][name].clone()
        opt.step()
        for name, p in params.items():
            out[f"{config['name']}.{s}.{name}"] = p.detach().clone()
    return out


def write_safetensors(path, tensors, metadata):
    header, data = {"__metadata__": metadata}, b""
    for name, t in tensors.items():
        raw = t.detach().contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)
    return 8 + len(text) + len(data)


def main():
    torch.manual_seed(0)
    init = {name: torch.randn(shape) for name, shape in SHAPES.items()}
    grads = []
    for s in range(STEPS):
        step = {name: torch.randn(shape) * (0.5 + s * 0.4) for name, shape in SHAPES.items()}
        step["p0"][1, 2] = 0.0  # a zero gradient: the update must stay finite (eps in the denominator)
        grads.append(step)
    configs = [round_config(c) for c in CONFIGS]
    tensors = {f"init.{n}": t for n, t in init.items()}
    for s in range(STEPS):
        tensors.update({f"grad.{s}.{n}": t for n, t in grads[s].items()})
    for c in configs:
        tensors.update(run(c, init, grads))
    size = write_safetensors(OUT, tensors, {"configs": json.dumps(configs), "torch": torch.__version__})
    print(f"wrote {OUT} ({size} bytes, {len(tensors)} tensors)")


if __name__ == "__main__":
    main()
