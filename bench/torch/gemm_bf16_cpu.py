"""Peer of build/bench/bench_gemm_bf16: PyTorch's CPU matmul in bf16 and f32 on the same shapes (2048^3 and
the GEMMs of the small GPT preset's training step at batch 64), best of ~0.5 s of repeats per shape.
Usage: /usr/bin/python3 bench/torch/gemm_bf16_cpu.py [threads] [--quick]"""
import sys, time, torch
args = [a for a in sys.argv[1:] if not a.startswith('--')]
if args: torch.set_num_threads(int(args[0]))
quick = '--quick' in sys.argv

def linear(name, tokens, i, o):  # forward x W^T, dx = dy W, dW = dy^T x: (name, trans_a, trans_b, m, n, k)
    return [(name + '.fwd', False, True, tokens, o, i), (name + '.dx', False, False, tokens, i, o),
            (name + '.dW', True, False, o, i, tokens)]

T, C = 64 * 256, 384
shapes = [('square2048', False, False, 2048, 2048, 2048)]
if quick: shapes += linear('small.fc', T, C, 4 * C)
else:
    for name, i, o in (('qkv', C, 3 * C), ('attn_proj', C, C), ('fc', C, 4 * C), ('mlp_proj', 4 * C, C), ('lm_head', C, 65)):
        shapes += linear('small.' + name, T, i, o)

def best_ms(fn):
    fn(); t = time.perf_counter(); fn(); once = time.perf_counter() - t
    best = once
    for _ in range(max(3, min(200, int(0.5 / max(once, 1e-6))))):
        t = time.perf_counter(); fn(); best = min(best, time.perf_counter() - t)
    return best * 1e3

print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, mkldnn {torch.backends.mkldnn.is_available()}")
print(f"{'shape':20s} {'m':>6s} {'n':>6s} {'k':>6s} {'f32':>9s} {'bf16':>9s} {'x f32':>7s}  (GFLOP/s)")
for name, ta, tb, m, n, k in shapes:
    g = {}
    for dt in (torch.float32, torch.bfloat16):
        a = torch.randn(k, m, dtype=dt).t() if ta else torch.randn(m, k, dtype=dt)
        b = torch.randn(n, k, dtype=dt).t() if tb else torch.randn(k, n, dtype=dt)
        out = torch.empty(m, n, dtype=dt)
        g[dt] = 2 * m * n * k / best_ms(lambda: torch.matmul(a, b, out=out)) / 1e6
    print(f"{name:20s} {m:6d} {n:6d} {k:6d} {g[torch.float32]:9.1f} {g[torch.bfloat16]:9.1f} "
          f"{g[torch.bfloat16] / g[torch.float32]:7.2f}", flush=True)
