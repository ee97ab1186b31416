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
// dtype fp16 trains with the GradScaler, as ./train does. The 9th argument is the peer's "compile"
// (eager or compile), ignored here: "-" holds its place before a vocab. On a machine without a GPU,
// "cuda" exits 0 with a message; "cpu" runs on the CPU (fp32 only).
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "bench/bench_common.h"
#include "nn/gpt.h"
#include "optim/adamw.h"
#include "optim/grad_scaler.h"
#include "programs/lib/gpu_peak.h"
#include "tensor/cuda_allocator.h"
#include "tensor/device.h"
#include "tensor/error.h"

using namespace tg;

namespace {

// The arguments, in the order bench/torch/torch_gpt.py takes them.
struct Args {
  std::string device, dtype = "fp32", compile = "-";
  int64_t L = 0, H = 0, D = 0, T = 0, B = 0, steps = 0, V = 65;
};

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int run(const Args& args, Device device, DType dtype) {
  if (device.is_cuda() && !cuda_available()) {
    std::printf("bench_gpu_train: skipped, no CUDA GPU (%s)\n", cuda_status().c_str());
    return 0;
  }
  const int64_t L = args.L, H = args.H, D = args.D, T = args.T, B = args.B, steps = args.steps, V = args.V;
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
  for (size_t i = 0; i < u.size(); i++)
    ids[i] = static_cast<int32_t>(u[i] * static_cast<float>(V)) % static_cast<int32_t>(V);
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
    if (peak.flops > 0)
      std::printf(" MFU=%.1f%% of %.0f TFLOP/s", 100 * flops / seconds / peak.flops, peak.flops / 1e12);
    CudaMemoryStats mem = cuda_memory_stats(device);
    std::printf(" peak_mem=%.0fMiB reserved=%.0fMiB", static_cast<double>(mem.peak_allocated_bytes) / (1 << 20),
                static_cast<double>(mem.peak_reserved_bytes) / (1 << 20));
    if (scaler.enabled()) std::printf(" skipped_steps=%lld", static_cast<long long>(scaler.skipped_steps()));
  }
  std::printf("\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  FlagSet flags("bench_gpu_train", "device layers heads embd block batch steps [dtype] [compile] [vocab]",
                "End-to-end training throughput of tilegrad's GPT on one fixed batch of random tokens: ms/step,\n"
                "tokens/s, TFLOP/s and MFU. The arguments are those of the PyTorch peer bench/torch/torch_gpt.py;\n"
                "the first seven are required, e.g. bench_gpu_train cuda 6 6 384 256 64 50 bf16 - 65.");
  flags.add_string_argument("device", &args.device, "cpu, cuda or cuda:N", {}, true);
  flags.add_int_argument("layers", &args.L, "transformer blocks", 1, 1024, true);
  flags.add_int_argument("heads", &args.H, "attention heads, dividing embd", 1, 1 << 16, true);
  flags.add_int_argument("embd", &args.D, "embedding width", 1, 1 << 20, true);
  flags.add_int_argument("block", &args.T, "sequence length, the model's block size", 1, 1 << 24, true);
  flags.add_int_argument("batch", &args.B, "sequences in the batch", 1, 1 << 24, true);
  flags.add_int_argument("steps", &args.steps, "timed steps, after 3 warm-up ones", 1, 1000000000, true);
  flags.add_string_argument("dtype", &args.dtype, "fp16 trains with loss scaling; the CPU trains in fp32 only",
                            {"fp32", "bf16", "fp16", "f32", "f16", "float32", "bfloat16", "float16"});
  flags.add_string_argument("compile", &args.compile, "ignored: the peer's eager|compile; '-' holds its place");
  flags.add_int_argument("vocab", &args.V, "vocabulary size; tokens are drawn uniformly below it", 2, INT32_MAX);
  Device device;
  DType dtype = DType::F32;
  auto check = [&] {
    device = parse_device(args.device);
    dtype = parse_dtype(args.dtype);
    if (!device.is_cuda() && dtype != DType::F32) throw Error("the CPU trains in fp32 only, got " + args.dtype);
    if (args.D % args.H != 0)
      throw Error("embd " + std::to_string(args.D) + " is not a multiple of heads " + std::to_string(args.H));
  };
  return bench::run_main(flags, argc, argv, [&] { return run(args, device, dtype); }, check);
}
