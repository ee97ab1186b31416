"""Peer of build/bench/bench_half_convert: PyTorch's CPU conversions of one flat tensor of n values
(64 Mi by default) from f32 to bf16 and f16 and back (Tensor.to into a preallocated tensor with copy_,
as the benchmark converts into a kept buffer). Prints the best and median time of 20 runs after 2,
and the bytes moved (6 a value: 4 read and 2 written, or 2 and 4) over the best time.
Usage: /usr/bin/python3 bench/torch/half_convert_cpu.py [threads] [n]"""
import statistics, sys, time, torch
args = sys.argv[1:]
if args: torch.set_num_threads(int(args[0]))
n = int(args[1]) if len(args) > 1 else 64 << 20

torch.manual_seed(1)
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, n = {n}")
print(f"{'conversion':22s} {'ms best (median)':>16s} {'GB/s':>10s}")
f32 = torch.randn(n)
back = torch.empty(n)
for dtype, name in ((torch.bfloat16, 'bf16'), (torch.float16, 'f16')):
    half = torch.empty(n, dtype=dtype)
    for label, dst, src in ((f'f32 -> {name}', half, f32), (f'{name} -> f32', back, half)):
        times = []
        for i in range(22):
            t = time.perf_counter(); dst.copy_(src); dt = time.perf_counter() - t
            if i >= 2: times.append(dt * 1e3)
        best = min(times)
        print(f"{label:22s} {best:7.2f} ({statistics.median(times):6.2f}) {6 * n / (best * 1e6):10.1f}", flush=True)
