"""Peer of build/bench/bench_optim: PyTorch's CPU AdamW step on one flat f32 parameter of n weights (the
small GPT preset's 10,773,888 by default), with its moments warm, for each of PyTorch's implementations
on the CPU (the per-tensor loop and foreach; its fused one is CUDA-only in 1.13). Prints the best and
median time of 20 steps after 3, and the bytes an f32 AdamW must move (28 a weight: the gradient, the
weight and two moments read, the weight and two moments written) over the best time.
Usage: /usr/bin/python3 bench/torch/adamw_cpu.py [threads] [n]"""
import statistics, sys, time, torch
args = sys.argv[1:]
if args: torch.set_num_threads(int(args[0]))
n = int(args[1]) if len(args) > 1 else 10773888

torch.manual_seed(1)
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, n = {n} weights")
print(f"{'AdamW':22s} {'ms best (median)':>16s} {'GB/s':>10s}")
for foreach in (False, True):
    p = torch.nn.Parameter(torch.randn(n))
    p.grad = 0.01 * torch.randn(n)
    opt = torch.optim.AdamW([p], lr=3e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, foreach=foreach)
    times = []
    for i in range(23):
        t = time.perf_counter(); opt.step(); dt = time.perf_counter() - t
        if i >= 3: times.append(dt * 1e3)
    best = min(times)
    name = 'f32 foreach' if foreach else 'f32 per tensor'
    print(f"{name:22s} {best:7.2f} ({statistics.median(times):6.2f}) {28 * n / (best * 1e6):10.1f}", flush=True)
