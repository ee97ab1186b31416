#include "ops/optim.h"

#include <cstdint>
#include <string>

#include "ops/check.h"
#include "ops/profiler.h"
#include "ops/cpu/optim.h"
#include "ops/optim_math.h"
#ifdef TG_CUDA
#include "ops/cuda/optim.h"
#endif

namespace tg::ops {

static bool is_half(DType dtype) { return dtype == DType::BF16 || dtype == DType::F16; }

// Parameters and gradients: f32, bf16 or f16, contiguous, on any device.
static void check_param_dtype(const char* op, const Tensor& t, const std::string& name) {
  check_float_or_half_contiguous(op, t, name.c_str());
}

// The checks every optimizer state tensor shares: f32, contiguous, shaped like the parameter.
static void check_like_param(const char* op, const Tensor& t, const std::string& name, const Tensor& param) {
  check_shape(op, t, name.c_str(), param.shape(), "the shape of param");
  check_dtype(op, t, name.c_str(), DType::F32);
  check_contiguous(op, t, name.c_str());
}

static void check_step(const char* op, int64_t step, const std::string& where) {
  if (step < 1)
    throw Error(std::string(op) + ": " + where + "step is " + std::to_string(step) +
                ", expected >= 1 (it counts this update)");
}

// ---- AdamW ---------------------------------------------------------------------------------

// Checks one entry; `prefix` names it in messages ("" for the single-tensor form).
static void check_adamw_param(const char* op, const AdamWParam& p, const std::string& prefix) {
  check_param_dtype(op, p.param, prefix + "param");
  check_shape(op, p.grad, (prefix + "grad").c_str(), p.param.shape(), "the shape of param");
  if (p.grad.dtype() != p.param.dtype())
    throw Error(std::string(op) + ": " + prefix + "grad has dtype " + dtype_name(p.grad.dtype()) + " but " + prefix +
                "param has " + dtype_name(p.param.dtype()) + "; they must match");
  check_contiguous(op, p.grad, (prefix + "grad").c_str());
  if (!is_half(p.param.dtype()) && (p.master.defined() || p.master_low.defined()))
    throw Error(std::string(op) + ": " + prefix + (p.master.defined() ? "master" : "master_low") +
                " is given for an f32 param (an f32 param is its own master)");
  if (is_half(p.param.dtype()) && p.master_low.defined()) {
    if (p.master.defined())
      throw Error(std::string(op) + ": " + prefix + "has both master and master_low; give the master in one form");
    if (p.param.dtype() != DType::BF16)
      throw Error(std::string(op) + ": " + prefix + "master_low is given for an " + dtype_name(p.param.dtype()) +
                  " param; only a bf16 param is the top half of its master (f16 needs an f32 master)");
    check_dtype(op, p.master_low, (prefix + "master_low").c_str(), DType::U8);
    check_contiguous(op, p.master_low, (prefix + "master_low").c_str());
    if (reinterpret_cast<uintptr_t>(p.master_low.data_raw()) % 2 != 0)
      throw Error(std::string(op) + ": " + prefix + "master_low starts at an odd byte; it is read as 16-bit values");
    if (p.master_low.numel() != 2 * p.param.numel())
      throw Error(std::string(op) + ": " + prefix + "master_low has " + std::to_string(p.master_low.numel()) +
                  " bytes, expected 2 per element of param (" + std::to_string(2 * p.param.numel()) + ")");
  } else if (is_half(p.param.dtype())) {
    check_like_param(op, p.master, prefix + "master", p.param);
  }
  check_like_param(op, p.m, prefix + "m", p.param);
  check_like_param(op, p.v, prefix + "v", p.param);
  check_step(op, p.step, prefix);
  check_same_device(op, {&p.param, &p.grad, &p.master, &p.master_low, &p.m, &p.v});
}

static void adamw_cpu(const AdamWParam& p, const AdamWSettings& s) {
  const int64_t n = p.param.numel();
  if (p.master_low.defined()) {
    cpu::adamw_update_bf16_split(static_cast<uint16_t*>(p.param.data_raw()),
                                 static_cast<const uint16_t*>(p.grad.data_raw()),
                                 static_cast<uint16_t*>(p.master_low.data_raw()), p.m.data<float>(), p.v.data<float>(),
                                 n, s.lr, s.beta1, s.beta2, s.eps, p.weight_decay, p.step);
  } else if (p.param.dtype() == DType::F32) {
    cpu::adamw_update(p.param.data<float>(), p.grad.data<float>(), p.m.data<float>(), p.v.data<float>(), n, s.lr,
                      s.beta1, s.beta2, s.eps, p.weight_decay, p.step);
  } else {
    cpu::adamw_update_half(p.param.dtype(), static_cast<uint16_t*>(p.param.data_raw()),
                           static_cast<const uint16_t*>(p.grad.data_raw()), p.master.data<float>(), p.m.data<float>(),
                           p.v.data<float>(), n, s.lr, s.beta1, s.beta2, s.eps, p.weight_decay, p.step,
                           s.stochastic_rounding, p.rounding_key);
  }
}

#ifdef TG_CUDA
// One launch per parameter dtype, each over a table of every parameter of that dtype.
static void adamw_cuda(const std::vector<AdamWParam>& params, const AdamWSettings& s, Device device) {
  cuda::AdamWShared shared;
  shared.beta1 = s.beta1;
  shared.beta2 = s.beta2;
  shared.one_minus_beta1 = static_cast<float>(1.0 - s.beta1);
  shared.one_minus_beta2 = static_cast<float>(1.0 - s.beta2);
  shared.eps = s.eps;
  shared.stochastic_rounding = s.stochastic_rounding ? 1 : 0;
  for (DType dtype : {DType::F32, DType::BF16, DType::F16}) {
    std::vector<cuda::AdamWTensor> table;
    for (const AdamWParam& p : params) {
      if (p.param.dtype() != dtype) continue;
      const optim_math::AdamWFactors f = optim_math::adamw_factors(s.lr, s.beta1, s.beta2, p.weight_decay, p.step);
      cuda::AdamWTensor e;
      e.param = p.param.data_raw();
      e.grad = p.grad.data_raw();
      e.master = p.master.defined() ? p.master.data<float>() : nullptr;
      e.master_low = p.master_low.defined() ? static_cast<uint16_t*>(p.master_low.data_raw()) : nullptr;
      e.m = p.m.data<float>();
      e.v = p.v.data<float>();
      e.numel = p.param.numel();
      e.first_chunk = 0;
      e.decay = f.decay;
      e.neg_step_size = f.neg_step_size;
      e.bias_correction2_sqrt = f.bias_correction2_sqrt;
      e.rounding_key = p.rounding_key;
      table.push_back(e);
    }
    if (table.empty()) continue;
    Tensor device_table = Tensor::empty({static_cast<int64_t>(table.size() * sizeof(cuda::AdamWTensor))}, DType::U8, device);
    cuda::adamw_multi_update(dtype, table.data(), static_cast<int>(table.size()), device_table.data_raw(), shared);
  }
}
#endif

void adamw_update(const std::vector<AdamWParam>& params, const AdamWSettings& settings) {
  const char* op = "adamw_update";
  if (params.empty()) return;
  for (size_t i = 0; i < params.size(); i++) {
    check_adamw_param(op, params[i], "parameter " + std::to_string(i) + " ");
    if (params[i].master_low.defined() && settings.stochastic_rounding)
      throw Error(std::string(op) + ": parameter " + std::to_string(i) +
                  " has its master as master_low, which holds a param rounded to nearest; stochastic rounding "
                  "needs an f32 master");
  }
  const Device device = params[0].param.device();
  for (size_t i = 1; i < params.size(); i++)
    if (params[i].param.device() != device)
      throw Error(std::string(op) + ": parameter " + std::to_string(i) + " is on " + params[i].param.device().str() +
                  " but parameter 0 is on " + device.str() + "; one step updates parameters on one device");
  // About 12 FLOPs per element: two moment updates, the bias corrections, sqrt, divide and decay.
  ProfiledOp profiled(op, [&](OpCost& c) {
    std::vector<Tensor> param, grad, master, moments;
    for (const AdamWParam& p : params) {
      param.push_back(p.param);
      grad.push_back(p.grad);
      master.push_back(p.master.defined() ? p.master : p.master_low);
      moments.push_back(p.m);
      moments.push_back(p.v);
      c.flops += 12.0 * static_cast<double>(p.param.numel());
    }
    // Parameters, masters and moments are read and written; gradients read.
    c.reads_list("params", param, 2).reads_list("grads", grad).reads_list("masters", master, 2);
    c.reads_list("moments", moments, 2);
  });
  switch (device.type) {
    case DeviceType::CPU:
      for (const AdamWParam& p : params) adamw_cpu(p, settings);
      break;
#ifdef TG_CUDA
    case DeviceType::CUDA: adamw_cuda(params, settings, device); break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

std::pair<Tensor, Tensor> split_bf16_master(const Tensor& master, Device device) {
  const char* op = "split_bf16_master";
  check_defined(op, master, "master");
  check_dtype(op, master, "master", DType::F32);
  const Tensor host = master.to(Device::cpu()).contiguous();
  const int64_t n = host.numel();
  Tensor param = Tensor::empty(master.shape(), DType::BF16, Device::cpu());
  Tensor low = Tensor::empty({2 * n}, DType::U8, Device::cpu());
  const float* x = host.data<float>();
  auto* p = static_cast<uint16_t*>(param.data_raw());
  auto* l = static_cast<uint16_t*>(low.data_raw());
#pragma omp parallel for schedule(static) if (n > (int64_t(1) << 16))
  for (int64_t i = 0; i < n; i++) {
    p[i] = optim_math::master_bf16(x[i]);
    l[i] = optim_math::master_low_bits(x[i]);
  }
  return {param.to(device), low.to(device)};
}

Tensor join_bf16_master(const Tensor& param, const Tensor& master_low) {
  const char* op = "join_bf16_master";
  check_defined(op, param, "param");
  check_dtype(op, param, "param", DType::BF16);
  check_dtype(op, master_low, "master_low", DType::U8);
  if (master_low.numel() != 2 * param.numel())
    throw Error(std::string(op) + ": master_low has " + std::to_string(master_low.numel()) +
                " bytes, expected 2 per element of param (" + std::to_string(2 * param.numel()) + ")");
  const Tensor p = param.to(Device::cpu()).contiguous(), l = master_low.to(Device::cpu()).contiguous();
  Tensor master = Tensor::empty(param.shape(), DType::F32, Device::cpu());
  const auto* pb = static_cast<const uint16_t*>(p.data_raw());
  const auto* lb = static_cast<const uint16_t*>(l.data_raw());
  float* x = master.data<float>();
  const int64_t n = master.numel();
#pragma omp parallel for schedule(static) if (n > (int64_t(1) << 16))
  for (int64_t i = 0; i < n; i++) x[i] = optim_math::join_master(pb[i], lb[i]);
  return master;
}

Tensor exact_bf16_master_low(const Tensor& param) {
  // Zero low bits are no offset (optim_math.h): the master is the parameter.
  return Tensor::zeros({2 * param.numel()}, DType::U8, param.device());
}

void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int64_t step) {
  const char* op = "adamw_update";
  check_defined(op, param, "param");
  check_dtype(op, param, "param", DType::F32);
  AdamWParam p;
  p.param = param;
  p.grad = grad;
  p.m = m;
  p.v = v;
  p.weight_decay = weight_decay;
  p.step = step;
  check_adamw_param(op, p, "");
  AdamWSettings s;
  s.lr = lr;
  s.beta1 = beta1;
  s.beta2 = beta2;
  s.eps = eps;
  adamw_update(std::vector<AdamWParam>{p}, s);
}

// ---- SGD -----------------------------------------------------------------------------------

void sgd_update(Tensor& param, const Tensor& grad, Tensor& momentum_buf, float lr, float momentum, float dampening,
                float weight_decay, bool nesterov, bool first_step) {
  const char* op = "sgd_update";
  check_defined(op, param, "param");
  check_dtype(op, param, "param", DType::F32);
  check_contiguous(op, param, "param");
  check_like_param(op, grad, "grad", param);
  if (momentum != 0.0f) check_like_param(op, momentum_buf, "momentum_buf", param);
  Device device = check_same_device(op, {&param, &grad, &momentum_buf});
  float* buf = momentum != 0.0f ? momentum_buf.data<float>() : nullptr;
  ProfiledOp profiled(op, [&](OpCost& c) {
    c.updates("param", param).reads("grad", grad).updates("momentum", momentum_buf);
    c.flops = 6.0 * static_cast<double>(param.numel());
  });
  switch (device.type) {
    case DeviceType::CPU:
      cpu::sgd_update(param.data<float>(), grad.data<float>(), buf, param.numel(), lr, momentum, dampening,
                      weight_decay, nesterov, first_step);
      break;
#ifdef TG_CUDA
    case DeviceType::CUDA:
      cuda::sgd_update(param.data<float>(), grad.data<float>(), buf, param.numel(), lr, momentum, dampening,
                       weight_decay, nesterov, first_step);
      break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

// ---- gradient passes -----------------------------------------------------------------------

// The defined tensors of `tensors`, checked, and their common device (CPU when there are none).
static std::vector<Tensor> defined_on_one_device(const char* op, const std::vector<Tensor>& tensors, Device& device) {
  std::vector<Tensor> out;
  for (size_t i = 0; i < tensors.size(); i++) {
    if (!tensors[i].defined()) continue;
    check_param_dtype(op, tensors[i], "tensor " + std::to_string(i));
    if (!out.empty() && tensors[i].device() != out[0].device())
      throw Error(std::string(op) + ": tensor " + std::to_string(i) + " is on " + tensors[i].device().str() +
                  " but the first is on " + out[0].device().str() + "; the tensors must share a device");
    out.push_back(tensors[i]);
  }
  device = out.empty() ? Device::cpu() : out[0].device();
  return out;
}

#ifdef TG_CUDA
// The tensors of one dtype as a multi-tensor table, and how many chunks they make.
static std::vector<cuda::TensorChunks> chunk_table(const std::vector<Tensor>& tensors, DType dtype, int64_t& chunks) {
  std::vector<cuda::TensorChunks> table;
  chunks = 0;
  for (const Tensor& t : tensors) {
    if (t.dtype() != dtype) continue;
    table.push_back({t.data_raw(), t.numel(), 0});
    chunks += cuda::optim_chunk_count(t.numel());
  }
  return table;
}

static Tensor table_buffer(size_t entries, Device device) {
  return Tensor::empty({static_cast<int64_t>(entries * sizeof(cuda::TensorChunks))}, DType::U8, device);
}

static double sum_of_squares_cuda(const std::vector<Tensor>& tensors, Device device) {
  int64_t total = 0;
  for (const Tensor& t : tensors) total += cuda::optim_chunk_count(t.numel());
  if (total == 0) return 0.0;
  // Each dtype's launch fills its own range of the partials, in dtype order, then one pass adds them all.
  Tensor partials = Tensor::empty({total}, DType::F32, device);
  int64_t offset = 0;
  for (DType dtype : {DType::F32, DType::BF16, DType::F16}) {
    int64_t chunks = 0;
    std::vector<cuda::TensorChunks> table = chunk_table(tensors, dtype, chunks);
    if (table.empty()) continue;
    Tensor device_table = table_buffer(table.size(), device);
    cuda::multi_sum_of_squares(dtype, table.data(), static_cast<int>(table.size()), device_table.data_raw(),
                               partials.data<float>() + offset);
    offset += chunks;
  }
  Tensor result = Tensor::empty({static_cast<int64_t>(sizeof(double))}, DType::U8, device);
  return cuda::sum_partials(partials.data<float>(), total, static_cast<double*>(result.data_raw()));
}

static bool scale_cuda(const std::vector<Tensor>& tensors, float s, bool check, Device device) {
  Tensor flag;
  if (check) {
    flag = Tensor::empty({1}, DType::I32, device);
    cuda::clear_flag(flag.data<int32_t>());
  }
  for (DType dtype : {DType::F32, DType::BF16, DType::F16}) {
    int64_t chunks = 0;
    std::vector<cuda::TensorChunks> table = chunk_table(tensors, dtype, chunks);
    if (table.empty()) continue;
    Tensor device_table = table_buffer(table.size(), device);
    cuda::multi_scale(dtype, table.data(), static_cast<int>(table.size()), device_table.data_raw(), s,
                      check ? flag.data<int32_t>() : nullptr);
  }
  return check && cuda::read_flag(flag.data<int32_t>()) != 0;
}
#endif

static double sum_of_squares_cpu(const Tensor& t) {
  if (t.dtype() == DType::F32) return cpu::sum_of_squares(t.data<float>(), t.numel());
  return cpu::sum_of_squares_half(t.dtype(), static_cast<const uint16_t*>(t.data_raw()), t.numel());
}

static bool scale_cpu(const Tensor& t, float s, bool check) {
  if (t.dtype() == DType::F32) return cpu::scale(t.data<float>(), t.numel(), s, check);
  return cpu::scale_half(t.dtype(), static_cast<uint16_t*>(t.data_raw()), t.numel(), s, check);
}

double sum_of_squares(const std::vector<Tensor>& tensors) {
  const char* op = "sum_of_squares";
  Device device;
  std::vector<Tensor> list = defined_on_one_device(op, tensors, device);
  ProfiledOp profiled(op, [&](OpCost& c) {
    c.reads_list("tensors", list);
    for (const Tensor& t : list) c.flops += 2.0 * static_cast<double>(t.numel());
  });
  switch (device.type) {
    case DeviceType::CPU: {
      double sum = 0.0;
      for (const Tensor& t : list) sum += sum_of_squares_cpu(t);
      return sum;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: return sum_of_squares_cuda(list, device);
#endif
    default: throw_unsupported_device(op, device);
  }
}

double sum_of_squares(const Tensor& t) {
  check_param_dtype("sum_of_squares", t, "t");
  return sum_of_squares(std::vector<Tensor>{t});
}

// The shared body of scale_ and scale_and_find_non_finite_.
static bool scale_list(const char* op, const std::vector<Tensor>& tensors, float s, bool check) {
  Device device;
  std::vector<Tensor> list = defined_on_one_device(op, tensors, device);
  ProfiledOp profiled(op, [&](OpCost& c) {
    c.reads_list("tensors", list, 2);  // read and written
    for (const Tensor& t : list) c.flops += (check ? 2.0 : 1.0) * static_cast<double>(t.numel());
  });
  switch (device.type) {
    case DeviceType::CPU: {
      bool found = false;
      for (const Tensor& t : list) found |= scale_cpu(t, s, check);
      return found;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: return scale_cuda(list, s, check, device);
#endif
    default: throw_unsupported_device(op, device);
  }
}

void scale_(const std::vector<Tensor>& tensors, float s) { scale_list("scale_", tensors, s, false); }

void scale_(Tensor& t, float s) {
  check_param_dtype("scale_", t, "t");
  scale_list("scale_", {t}, s, false);
}

bool scale_and_find_non_finite_(const std::vector<Tensor>& tensors, float s) {
  return scale_list("scale_and_find_non_finite_", tensors, s, true);
}

}  // namespace tg::ops
