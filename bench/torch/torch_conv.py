"""Peer: cuDNN convolution through PyTorch, per layer of cnn-ref and resnet (bench/bench_gpu_conv.cu's
layers: 1x28x28 input, batch 256), channels_last, forward / input gradient / weight gradient, in
bf16 and f32 (TF32 off, as ours is plain f32). Medians of 30 runs timed with CUDA events, after 5
warm-up runs. Prints the lines bench_gpu_conv prints:
  conv bf16 <layer>: fwd X, dgrad Y, wgrad Z TFLOP/s
Usage: python3 torch_conv.py [cuda]"""
import sys, torch
dev = sys.argv[1] if len(sys.argv) > 1 else 'cuda'
torch.backends.cudnn.benchmark = True
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
B = 256
layers = [("cnn-ref.conv1 1->32", 28, 1, 32, 3, 1, 1), ("cnn-ref.conv2 32->64", 28, 32, 64, 3, 1, 1),
          ("cnn-ref.conv3 64->128", 14, 64, 128, 3, 1, 1), ("resnet.conv1 1->32", 28, 1, 32, 3, 1, 1),
          ("resnet.32 3x3 @28", 28, 32, 32, 3, 1, 1),
          ("resnet.64 3x3 s2 @28", 28, 32, 64, 3, 2, 1), ("resnet.64 1x1 s2 @28", 28, 32, 64, 1, 2, 0),
          ("resnet.64 3x3 @14", 14, 64, 64, 3, 1, 1), ("resnet.128 3x3 s2 @14", 14, 64, 128, 3, 2, 1),
          ("resnet.128 1x1 s2 @14", 14, 64, 128, 1, 2, 0), ("resnet.128 3x3 @7", 7, 128, 128, 3, 1, 1)]

def median_ms(fn, repeats=30, warmup=5):
    for _ in range(warmup): fn()
    times = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(); fn(); stop.record(); stop.synchronize()
        times.append(start.elapsed_time(stop))
    times.sort()
    return times[len(times) // 2]

print(f"torch {torch.__version__} cudnn {torch.backends.cudnn.version()} {torch.cuda.get_device_name()}", flush=True)
for dtype, name in ((torch.bfloat16, 'bf16'), (torch.float32, 'f32')):
    for layer, H, C, K, R, stride, pad in layers:
        x = torch.randn(B, C, H, H, device=dev, dtype=dtype).to(memory_format=torch.channels_last)
        w = torch.randn(K, C, R, R, device=dev, dtype=dtype).to(memory_format=torch.channels_last)
        out = torch.nn.functional.conv2d(x, w, None, stride, pad)
        dout = torch.randn_like(out).to(memory_format=torch.channels_last)
        def backward(mask):
            return torch.ops.aten.convolution_backward(dout, x, w, None, [stride, stride], [pad, pad], [1, 1], False,
                                                       [0, 0], 1, mask)
        flops = 2.0 * out.numel() * C * R * R
        ms = [median_ms(lambda: torch.nn.functional.conv2d(x, w, None, stride, pad)),
              median_ms(lambda: backward([True, False, False])), median_ms(lambda: backward([False, True, False]))]
        tf = [flops / (t * 1e-3) / 1e12 for t in ms]
        print(f"conv {name} {layer}: fwd {tf[0]:.2f}, dgrad {tf[1]:.2f}, wgrad {tf[2]:.2f} TFLOP/s", flush=True)
