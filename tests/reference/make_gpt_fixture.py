#!/usr/bin/python3
"""Writes tests/reference/gpt_tiny.safetensors, the PyTorch reference for tests/test_gpt_parity.cpp.

A tiny GPT written out in plain PyTorch (so the architecture is visible on one screen and does not
depend on any model library): learned positions, pre-LN blocks, GELU (tanh form), causal attention
as an explicit masked softmax, a final LayerNorm and an lm_head tied to the token embedding. It is
the same network as tilegrad's nn/gpt.h, with parameters named as in GPT-2's checkpoints.

Everything runs in float64 and is stored as float32, so the reference carries no float32 rounding
of its own: the differences the C++ test sees are tilegrad's alone.

Contents (all f32 unless said):
  <parameter name>        every parameter, e.g. "wte.weight", "h.0.attn.c_attn.bias"
  idx, targets            i32 (B, T); two targets are -1 (ignored by the loss)
  logits                  (B, T, V)
  loss                    () mean cross entropy over the non-ignored targets
  grad.<parameter name>   d loss / d parameter
  adamw_losses            (STEPS,) the loss after each of STEPS AdamW updates on the same batch
The metadata records the config and every hyperparameter.

Run:  /usr/bin/python3 tests/reference/make_gpt_fixture.py   (Debian's python3-torch is enough;
the safetensors file is written here with struct + json, no extra package needed)
"""
import json
import math
import os
import struct
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError as missing:  # the yardsticks are not part of `make deps`
    sys.exit(f"{os.path.basename(__file__)}: {missing.name} is not installed; `make deps-bench` installs it")

CONFIG = dict(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=24, dropout=0.0, bias=True)
BATCH, SEQ = 3, 11  # SEQ < block_size on purpose: positions past SEQ must get zero gradient
SEED = 20261122
STEPS = 10
LR, BETA1, BETA2, EPS, WEIGHT_DECAY = 1e-2, 0.9, 0.95, 1e-8, 0.1
LN_EPS = 1e-5

torch.manual_seed(SEED)
DTYPE = torch.float64


def parameter_shapes(cfg):
    """Names and shapes in the order tilegrad's GPT registers them (GPT-2's state dict order)."""
    V, T, C, L = cfg["vocab_size"], cfg["block_size"], cfg["n_embd"], cfg["n_layer"]
    shapes = [("wte.weight", (V, C)), ("wpe.weight", (T, C))]
    for l in range(L):
        p = f"h.{l}."
        shapes += [
            (p + "ln_1.weight", (C,)), (p + "ln_1.bias", (C,)),
            (p + "attn.c_attn.weight", (3 * C, C)), (p + "attn.c_attn.bias", (3 * C,)),
            (p + "attn.c_proj.weight", (C, C)), (p + "attn.c_proj.bias", (C,)),
            (p + "ln_2.weight", (C,)), (p + "ln_2.bias", (C,)),
            (p + "mlp.c_fc.weight", (4 * C, C)), (p + "mlp.c_fc.bias", (4 * C,)),
            (p + "mlp.c_proj.weight", (C, 4 * C)), (p + "mlp.c_proj.bias", (C,)),
        ]
    shapes += [("ln_f.weight", (C,)), ("ln_f.bias", (C,))]
    return shapes


def init_parameter(name, shape):
    """Larger than GPT-2's N(0, 0.02), and LayerNorm affine terms away from ones/zeros, so that
    attention is far from uniform, GELU works in its curved range and a mix-up of any LayerNorm
    weight with its bias (or a missing bias) changes the logits visibly."""
    if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight":
        return 1.0 + 0.1 * torch.randn(shape, dtype=DTYPE)
    if len(shape) == 1:
        return 0.1 * torch.randn(shape, dtype=DTYPE)
    if name in ("wte.weight", "wpe.weight"):
        return 0.5 * torch.randn(shape, dtype=DTYPE)
    return torch.randn(shape, dtype=DTYPE) / math.sqrt(shape[1])  # unit-variance pre-activations


def forward(params, idx, cfg, gelu="tanh", ln_eps=LN_EPS):
    B, T = idx.shape
    C, NH = cfg["n_embd"], cfg["n_head"]
    HS = C // NH
    x = params["wte.weight"][idx] + params["wpe.weight"][:T]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(cfg["n_layer"]):
        p = lambda name: params[f"h.{l}.{name}"]
        h = F.layer_norm(x, (C,), p("ln_1.weight"), p("ln_1.bias"), ln_eps)
        qkv = F.linear(h, p("attn.c_attn.weight"), p("attn.c_attn.bias"))
        q, k, v = qkv.split(C, dim=2)
        q, k, v = (t.view(B, T, NH, HS).transpose(1, 2) for t in (q, k, v))  # (B, NH, T, HS)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(HS)
        att = att.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + F.linear(y, p("attn.c_proj.weight"), p("attn.c_proj.bias"))
        h = F.layer_norm(x, (C,), p("ln_2.weight"), p("ln_2.bias"), ln_eps)
        h = F.gelu(F.linear(h, p("mlp.c_fc.weight"), p("mlp.c_fc.bias")), approximate=gelu)
        x = x + F.linear(h, p("mlp.c_proj.weight"), p("mlp.c_proj.bias"))
    x = F.layer_norm(x, (C,), params["ln_f.weight"], params["ln_f.bias"], ln_eps)
    return x @ params["wte.weight"].t()  # tied lm_head


def loss_of(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)


def write_safetensors(path, tensors, metadata):
    """The safetensors format: u64 little-endian header length, a JSON header naming each tensor's
    dtype, shape and byte range, padded with spaces to a multiple of 8, then the raw bytes."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors:
        t = t.detach().contiguous()
        dtype = {torch.float32: "F32", torch.int32: "I32"}[t.dtype]
        data = t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def run(initial, idx, targets, shapes, cfg, dtype):
    """Logits, loss and gradients at `initial`, then the losses of STEPS AdamW updates, in `dtype`."""
    params = {name: torch.nn.Parameter(initial[name].to(dtype, copy=True)) for name, _ in shapes}
    logits = forward(params, idx, cfg)
    loss = loss_of(logits, targets)
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in params.items()}

    # nanoGPT's grouping: every parameter with 2 or more dimensions decays (weights and both
    # embeddings), biases and LayerNorm parameters do not. Same batch every step.
    decay = [params[n] for n, s in shapes if len(s) >= 2]
    no_decay = [params[n] for n, s in shapes if len(s) < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=LR, betas=(BETA1, BETA2), eps=EPS)
    adamw_losses = []
    for step in range(STEPS):
        optimizer.zero_grad()
        step_loss = loss_of(forward(params, idx, cfg), targets)
        step_loss.backward()
        optimizer.step()
        with torch.no_grad():
            adamw_losses.append(loss_of(forward(params, idx, cfg), targets).item())
    return logits.detach(), loss.detach(), grads, torch.tensor(adamw_losses, dtype=torch.float64)


def relative_error(ours, ref):
    ours, ref = ours.double(), ref.double()
    return ((ours - ref).norm() / ref.norm()).item()


def main():
    cfg = CONFIG
    shapes = parameter_shapes(cfg)
    # Rounded to float32 first: the C++ test starts from exactly the stored values.
    initial = {name: init_parameter(name, shape).float().double() for name, shape in shapes}

    idx = torch.randint(0, cfg["vocab_size"], (BATCH, SEQ))
    targets = torch.randint(0, cfg["vocab_size"], (BATCH, SEQ))
    targets[0, 3] = -1
    targets[2, SEQ - 1] = -1

    logits, loss, grads, adamw_losses = run(initial, idx, targets, shapes, cfg, torch.float64)

    f32 = lambda t: t.detach().to(torch.float32)
    tensors = [(name, f32(initial[name])) for name, _ in shapes]
    tensors += [("idx", idx.to(torch.int32)), ("targets", targets.to(torch.int32)),
                ("logits", f32(logits)), ("loss", f32(loss))]
    tensors += [("grad." + name, f32(grads[name])) for name, _ in shapes]
    tensors += [("adamw_losses", f32(adamw_losses))]

    metadata = {k: str(v) for k, v in cfg.items()}
    metadata.update({
        "batch": str(BATCH), "seq": str(SEQ), "seed": str(SEED), "layernorm_eps": str(LN_EPS),
        "gelu": "tanh", "ignore_index": "-1", "reference_dtype": "float64 (stored as float32)",
        "adamw_steps": str(STEPS), "adamw_lr": str(LR), "adamw_beta1": str(BETA1), "adamw_beta2": str(BETA2),
        "adamw_eps": str(EPS), "adamw_weight_decay": str(WEIGHT_DECAY),
        "adamw_decay_group": "parameters with dim >= 2 (weights, wte, wpe); the rest weight_decay 0",
        "adamw_losses": "loss after each update, same batch every step",
        "torch_version": torch.__version__,
    })
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpt_tiny.safetensors")
    write_safetensors(path, tensors, metadata)
    print(f"wrote {path} ({os.path.getsize(path)} bytes): loss {loss.item():.6f}, "
          f"after {STEPS} AdamW steps {adamw_losses[-1].item():.6f}")

    # How far PyTorch's own float32 lands from this float64 reference: the yardstick for the
    # tolerances in tests/test_gpt_parity.cpp (tilegrad's float32 should land in the same range).
    logits32, loss32, grads32, losses32 = run(initial, idx, targets, shapes, cfg, torch.float32)
    print(f"torch float32 vs float64 relative errors: logits {relative_error(logits32, logits):.1e}, "
          f"loss {relative_error(loss32, loss):.1e}, "
          f"worst gradient {max(relative_error(grads32[n], grads[n]) for n, _ in shapes):.1e}, "
          f"AdamW losses (each) {max(abs(a - b) / b for a, b in zip(losses32.tolist(), adamw_losses.tolist())):.1e}")

    # And how far two subtle bugs land, which the tolerances must stay well below: GELU's exact erf
    # form instead of the tanh form, and LayerNorm's eps off by 10x.
    with torch.no_grad():
        params = {name: initial[name] for name, _ in shapes}
        erf = relative_error(forward(params, idx, cfg, gelu="none"), logits)
        eps = relative_error(forward(params, idx, cfg, ln_eps=LN_EPS / 10), logits)
    print(f"subtle bugs, relative error of the logits: erf GELU {erf:.1e}, LayerNorm eps / 10 {eps:.1e}")


if __name__ == "__main__":
    main()
