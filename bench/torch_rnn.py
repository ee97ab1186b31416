#!/usr/bin/python3
"""PyTorch's CPU LSTM, timed as bench/bench_rnn.cpp times tilegrad's: forward + backward of
nn.LSTM(I, H, num_layers) on x (T, B, I), loss = sum(output * w), fp32, best of REPEATS after one
warmup. Prints one line, "<best ms> <median ms>", for bench_rnn to read.

Usage: /usr/bin/python3 bench/torch_rnn.py T B I H LAYERS REPEATS THREADS
"""
import statistics
import sys
import time

import torch


def main():
    T, B, I, H, layers, repeats, threads = (int(a) for a in sys.argv[1:8])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(I, H, num_layers=layers)
    x = torch.randn(T, B, I, requires_grad=True)
    w = torch.randn(T, B, H)
    times = []
    for r in range(repeats + 1):
        lstm.zero_grad(set_to_none=True)
        x.grad = None
        start = time.perf_counter()
        output, _ = lstm(x)
        (output * w).sum().backward()
        elapsed = (time.perf_counter() - start) * 1e3
        if r > 0:  # the first run is the warmup
            times.append(elapsed)
    print(f"{min(times):.3f} {statistics.median(times):.3f}")


if __name__ == "__main__":
    main()
