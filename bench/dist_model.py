#!/usr/bin/env python3
"""The alpha-beta cost model of data-parallel training on H100s: predicted step time and scaling
efficiency of GPT-2 124M and of a 1.5B model on 8, 64 and 512 GPUs, with and without overlapping
the gradient all-reduce with the backward pass, and with ZeRO-1.

    python3 bench/dist_model.py                      # the table, every assumption printed first
    python3 bench/dist_model.py --mfu 0.3 --tokens 8192

Ring all-reduce of S bytes over N ranks (Patarasuk and Yuan, 2009), the issue's formula:
    T = 2(N-1)/N * S / B + 2(N-1) * alpha
with B the bandwidth of the slowest link a rank sends on and alpha the latency of one of the
2(N-1) ring steps. A reduce-scatter or an all-gather is half of it: (N-1)/N * S / B + (N-1) alpha.
It is a model, not a measurement: NCCL picks trees and hierarchical rings that beat a flat ring's
latency term at 512 ranks, and real links reach 70-90% of their published figures.
"""
import argparse
import math

# Published figures and the assumptions built on them; each is printed with the table.
H100_BF16_DENSE = 989e12  # FLOP/s, H100 SXM datasheet, bf16 dense tensor cores
H100_HBM = 3.35e12        # B/s, H100 SXM HBM3
NVLINK4 = 450e9           # B/s per direction per GPU (NVLink 4: 900 GB/s bidirectional)
INFINIBAND = 400e9 / 8    # B/s per direction per GPU (one 400 Gb/s NDR port per GPU)
GPUS_PER_NODE = 8
ALPHA_NVLINK = 5e-6       # s per ring step inside a node (NCCL's per-step latency, order of magnitude)
ALPHA_IB = 10e-6          # s per ring step across nodes
BUCKET_BYTES = 25e6       # DDP's bucket (dist/data_parallel.h)
GRAD_BYTES = 2            # bf16 gradients are reduced (tilegrad's bf16 model: bf16 params and grads)
# AdamW per parameter: read bf16 grad (2), read+write the bf16 param and the 2 low bytes that make
# its f32 master (8, optim/adamw.h), read+write f32 m and v (16).
ADAMW_BYTES = 26
OPTIMIZER_STATE_BYTES = 10  # the master's low bytes, m and v per parameter: what ZeRO-1 shards

MODELS = {
    # name: (parameters, layers, width, context): GPT-2 small and GPT-2 XL (the 1.5B)
    "GPT-2 124M": (124_439_808, 12, 768, 1024),
    "GPT-2 1.5B": (1_557_611_200, 48, 1600, 1024),
}


def ring_all_reduce(nbytes, n, bandwidth, alpha):
    return 2 * (n - 1) / n * nbytes / bandwidth + 2 * (n - 1) * alpha


def link(n):
    """The slowest link of an n-rank ring: NVLink inside one node, InfiniBand across nodes."""
    if n <= GPUS_PER_NODE:
        return NVLINK4, ALPHA_NVLINK, "NVLink 4"
    return INFINIBAND, ALPHA_IB, "InfiniBand 400G"


def step_times(params, layers, width, context, n, tokens, mfu):
    """Seconds for one step on each of n GPUs: compute, and the step under each scheme."""
    flops_per_token = 6 * params + 12 * layers * context * width  # PaLM's count: weights + attention
    compute = flops_per_token * tokens / (H100_BF16_DENSE * mfu)
    backward = compute * 2 / 3  # backward does twice the forward's FLOPs
    optimizer = params * ADAMW_BYTES / H100_HBM
    grad_bytes = params * GRAD_BYTES
    if n == 1:
        return compute, optimizer, {k: compute + optimizer for k in ("serial", "overlap", "zero1")}
    bandwidth, alpha, _ = link(n)
    buckets = max(1, math.ceil(grad_bytes / BUCKET_BYTES))
    last_bucket = grad_bytes - (buckets - 1) * BUCKET_BYTES
    # Every bucket pays the latency term; the bytes are the whole gradient.
    all_reduce = sum(ring_all_reduce(min(BUCKET_BYTES, grad_bytes - b * BUCKET_BYTES), n, bandwidth, alpha)
                     for b in range(buckets))
    # Overlapped: communication runs behind the backward; what is left over, and at least the last
    # bucket (issued when backward ends), is exposed.
    exposed = max(all_reduce - backward, ring_all_reduce(last_bucket, n, bandwidth, alpha))
    # ZeRO-1: the reduce-scatter (half an all-reduce) overlaps the backward as the all-reduce did;
    # the optimizer updates 1/n of the parameters; the all-gather of the parameters (the other
    # half) follows the update and is exposed (dist/zero_adamw.h issues it after the step).
    reduce_scatter, all_gather = all_reduce / 2, all_reduce / 2
    exposed_rs = max(reduce_scatter - backward, ring_all_reduce(last_bucket, n, bandwidth, alpha) / 2)
    return compute, optimizer, {
        "serial": compute + all_reduce + optimizer,
        "overlap": compute + exposed + optimizer,
        "zero1": compute + exposed_rs + optimizer / n + all_gather,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mfu", type=float, default=0.40, help="model FLOPs utilisation of one H100 (default 0.40)")
    parser.add_argument("--tokens", type=int, default=16 * 1024,
                        help="tokens per GPU per step (default 16 sequences of 1024)")
    args = parser.parse_args()

    print("Assumptions")
    print(f"  H100 SXM: {H100_BF16_DENSE / 1e12:.0f} TFLOP/s bf16 dense, {H100_HBM / 1e12:.2f} TB/s HBM; "
          f"one step's compute at MFU {args.mfu:.0%} (--mfu), projected, not measured")
    print(f"  FLOPs per token: 6 * parameters + 12 * layers * context * width (forward + backward); "
          f"backward = 2/3 of the compute")
    print(f"  {args.tokens} tokens per GPU per step (--tokens): weak scaling, the global batch grows with N")
    print(f"  links: N <= {GPUS_PER_NODE}: NVLink 4, {NVLINK4 / 1e9:.0f} GB/s per direction per GPU, "
          f"alpha {ALPHA_NVLINK * 1e6:.0f} us per ring step; N > {GPUS_PER_NODE}: a flat ring across nodes, bound "
          f"by 400 Gb/s InfiniBand per GPU ({INFINIBAND / 1e9:.0f} GB/s), alpha {ALPHA_IB * 1e6:.0f} us per step")
    print(f"  ring all-reduce T = 2(N-1)/N * S/B + 2(N-1) alpha, paid per {BUCKET_BYTES / 1e6:.0f} MB bucket; "
          f"bf16 gradients ({GRAD_BYTES} bytes per parameter)")
    print(f"  overlap: the buckets' all-reduces hide behind the backward; the excess, and at least the last "
          f"bucket, is exposed")
    print(f"  optimizer: AdamW memory-bound, {ADAMW_BYTES} bytes per parameter at HBM bandwidth; ZeRO-1 updates "
          f"1/N of it, reduce-scatters the gradients (overlapped) and all-gathers the parameters (exposed)")
    print(f"  optimizer state: {OPTIMIZER_STATE_BYTES} bytes per parameter (the f32 master's 2 low bytes beside the bf16 "
          f"parameter, f32 m and v), 1/N of it with ZeRO-1")
    print(f"  efficiency = one GPU's step time / the N-GPU step time (same tokens per GPU)")
    print()
    header = (f"{'model':<11} {'GPUs':>4} {'link':<15} {'1 GPU ms':>9} {'no overlap':>15} {'overlap':>15} "
              f"{'ZeRO-1':>15} {'optim state/GPU':>16}")
    print(header)
    print("-" * len(header))
    for name, (params, layers, width, context) in MODELS.items():
        _, _, single = step_times(params, layers, width, context, 1, args.tokens, args.mfu)
        one = single["serial"]
        for n in (8, 64, 512):
            _, _, t = step_times(params, layers, width, context, n, args.tokens, args.mfu)
            cells = " ".join(f"{t[k] * 1e3:7.1f} ms {one / t[k]:4.0%}" for k in ("serial", "overlap", "zero1"))
            state = params * OPTIMIZER_STATE_BYTES
            print(f"{name:<11} {n:>4} {link(n)[2]:<15} {one * 1e3:9.1f} {cells} "
                  f"{state / 1e9:6.2f} -> {state / n / 1e9:5.3f} GB")
    print()
    print("Each scheme's cell: predicted step time and scaling efficiency. The optimizer-state column is "
          "per GPU without and with ZeRO-1.")


if __name__ == "__main__":
    main()
