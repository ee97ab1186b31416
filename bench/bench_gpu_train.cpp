// End-to-end training throughput of tilegrad's GPT, the same model, data and step as the PyTorch
// peer bench/torch/torch_gpt.py:
// pre-LN blocks, GELU MLP, causal attention, tied embeddings, AdamW at lr 1e-3, one fixed batch of
// random tokens, 3 warm-up steps then `steps` timed ones. The arguments are the peer's, so the
// two commands differ only in their first word:
//
//   build/bench/bench_gpu_train cuda 6 6 384 256 64 50 bf16 - 65
//   python3 bench/torch/torch_gpt.py cuda 6 6 384 256 64 50 bf16 - 65
//
// Prints ms/step, tokens/s, TFLOP/s by the model's own count (GPT::flops_per_token, which ./train's
// MFU uses too: 6 (N - wpe) + 12*L*D*T per token, the peer computes the same), MFU against the
// GPU's dense peak (programs/lib/gpu_peak.h), and peak GPU memory.
// --dtype fp16 trains with the GradScaler, as ./train does. On a machine without a GPU, "cuda"
// exits 0 with a message; "cpu" runs on the CPU (fp32 only).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "nn/gpt.h"
#include "optim/adamw.h"
#include "optim/grad_scaler.h"
#include "programs/lib/gpu_peak.h"
#include "tensor/cuda_allocator.h"
#include "tensor/device.h"
#include "tensor/error.h"

using namespace tg;

namespace {

void usage() {
  std::fprintf(stderr,
               "usage: bench_gpu_train [cpu|cuda] layers heads embd block batch steps [fp32|bf16|fp16] [-] [vocab]\n"
               "  the arguments of bench/torch/torch_gpt.py; the 9th (the peer's 'compile') is ignored\n");
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 8 || std::string(argv[1]) == "--help") {
    usage();
    return argc < 8 ? 2 : 0;
  }
  try {
    Device device = parse_device(argv[1]);
    if (device.is_cuda() && !cuda_available()) {
      std::printf("bench_gpu_train: skipped, no CUDA GPU (%s)\n", cuda_status().c_str());
      return 0;
    }
    int64_t L = std::atoll(argv[2]), H = std::atoll(argv[3]), D = std::atoll(argv[4]), T = std::atoll(argv[5]),
            B = std::atoll(argv[6]), steps = std::atoll(argv[7]);
    DType dtype = argc > 8 ? parse_dtype(argv[8]) : DType::F32;
    int64_t V = argc > 10 ? std::atoll(argv[10]) : 65;
    TG_CHECK(L > 0 && H > 0 && D > 0 && T > 0 && B > 0 && steps > 0 && V > 1, "bench_gpu_train: sizes must be positive");
    TG_CHECK(device.is_cuda() || dtype == DType::F32, "bench_gpu_train: the CPU trains in fp32 only");

    GPTConfig config;
    config.vocab_size = V;
    config.block_size = T;
    config.n_layer = L;
    config.n_head = H;
    config.n_embd = D;
    GPT model(config, 0);
    model.to(device);
    if (dtype != DType::F32) model.to(dtype);
    // torch.optim.AdamW(m.parameters(), lr=1e-3) as the peer: one group, its default decay 0.01.
    AdamW optimizer({ParamGroup{model.parameters(), 0.01f}}, 1e-3f);
    GradScalerOptions scaling;
    scaling.enabled = dtype == DType::F16;  // as ./train: loss scaling for fp16 only
    GradScaler scaler(scaling);

    // One batch, as the peer: tokens uniform in [0, V), targets the next token.
    Generator gen(0);
    std::vector<float> u = Tensor::rand({B, T + 1}, &gen).to_vector();
    std::vector<int32_t> ids(u.size());
    for (size_t i = 0; i < u.size(); i++) ids[i] = static_cast<int32_t>(u[i] * static_cast<float>(V)) % static_cast<int32_t>(V);
    Tensor all = Tensor::from_ints(ids, {B, T + 1});
    Tensor idx = all.slice(1, 0, T).contiguous().to(device), targets = all.slice(1, 1, T + 1).contiguous().to(device);

    float loss_value = 0;
    auto step = [&] {
      optimizer.zero_grad();
      Tensor loss = model.loss(model.forward(idx), targets);
      scaler.backward(loss);
      scaler.step(optimizer);
      scaler.update();
      return loss;
    };
    for (int i = 0; i < 3; i++) step();
    if (device.is_cuda()) cuda_reset_peak_stats(device);
    Tensor last;
    loss_value = step().item();  // a synchronizing read: the clock starts on an idle GPU
    double start = now_seconds();
    for (int64_t i = 0; i < steps; i++) last = step();
    loss_value = last.item();  // waits for the last step
    double seconds = (now_seconds() - start) / static_cast<double>(steps);

    double params = static_cast<double>(model.num_parameters());
    // block_size = T, so this is the count at the benchmarked sequence length.
    double flops = static_cast<double>(B * T) * model.flops_per_token();
    std::printf("tilegrad %s L%lld H%lld D%lld T%lld B%lld V%lld params=%.2fM dtype=%s: %.1f ms/step %.0f tok/s "
                "%.2f TFLOP/s [6(N-wpe)+12LDT per token] loss=%.3f",
                device.str().c_str(), static_cast<long long>(L), static_cast<long long>(H), static_cast<long long>(D),
                static_cast<long long>(T), static_cast<long long>(B), static_cast<long long>(V), params / 1e6,
                dtype_name(dtype), seconds * 1000, static_cast<double>(B * T) / seconds, flops / seconds / 1e12,
                loss_value);
    if (device.is_cuda()) {
      GpuPeak peak = gpu_peak(device, dtype);
      if (peak.flops > 0) std::printf(" MFU=%.1f%% of %.0f TFLOP/s", 100 * flops / seconds / peak.flops, peak.flops / 1e12);
      CudaMemoryStats mem = cuda_memory_stats(device);
      std::printf(" peak_mem=%.0fMiB reserved=%.0fMiB", static_cast<double>(mem.peak_allocated_bytes) / (1 << 20),
                  static_cast<double>(mem.peak_reserved_bytes) / (1 << 20));
      if (scaler.enabled()) std::printf(" skipped_steps=%lld", static_cast<long long>(scaler.skipped_steps()));
    }
    std::printf("\n");
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_gpu_train: %s\n", e.what());
    return 1;
  }
}
