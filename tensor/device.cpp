#include "tensor/device.h"

#include "tensor/cuda_check.h"
#include "tensor/error.h"

namespace tg {

std::string Device::str() const {
  return type == DeviceType::CPU ? "cpu" : "cuda:" + std::to_string(index);
}

Device parse_device(const std::string& text) {
  if (text == "cpu") return Device::cpu();
  if (text == "cuda") return Device::cuda(0);
  // At most 6 digits, so std::stoi cannot overflow (and throw something other than tg::Error).
  if (text.rfind("cuda:", 0) == 0 && text.size() > 5 && text.size() <= 11 &&
      text.find_first_not_of("0123456789", 5) == std::string::npos)
    return Device::cuda(std::stoi(text.substr(5)));
  throw Error("unknown device '" + text + "' (expected cpu, cuda or cuda:N)");
}

std::string no_cuda_message() {
  return "tilegrad was built without CUDA (nvcc not found at build time, or CUDA=0)";
}

#ifdef TG_CUDA

// The device count is asked once: it cannot change while the process runs, and on a machine with
// no GPU or no driver the runtime answers with an error code (cudaErrorNoDevice,
// cudaErrorInsufficientDriver), never an abort, so this is safe to call anywhere.
namespace {
struct CudaProbe {
  int count = 0;
  cudaError_t error = cudaSuccess;
};

const CudaProbe& cuda_probe() {
  static const CudaProbe probe = [] {
    CudaProbe p;
    p.error = cudaGetDeviceCount(&p.count);
    if (p.error != cudaSuccess) {
      p.count = 0;
      cudaGetLastError();  // clear it, so the next checked call does not report it
    }
    return p;
  }();
  return probe;
}
}  // namespace

bool cuda_available() { return cuda_probe().count > 0; }
int cuda_device_count() { return cuda_probe().count; }

std::string cuda_status() {
  const CudaProbe& probe = cuda_probe();
  if (probe.error != cudaSuccess) return std::string("no CUDA device (cudaGetDeviceCount: ") + cudaGetErrorName(probe.error) + ")";
  if (probe.count == 0) return "no CUDA device (cudaGetDeviceCount found 0)";
  std::string text = std::to_string(probe.count) + (probe.count == 1 ? " device: " : " devices: ");
  for (int i = 0; i < probe.count; i++) {
    if (i > 0) text += "; ";
    cudaDeviceProp prop;
    cudaError_t error = cudaGetDeviceProperties(&prop, i);
    if (error != cudaSuccess) {
      cudaGetLastError();
      text += "cuda:" + std::to_string(i) + " (cudaGetDeviceProperties: " + cudaGetErrorName(error) + ")";
    } else {
      text += std::string(prop.name) + ", sm_" + std::to_string(prop.major) + std::to_string(prop.minor);
    }
  }
  return text;
}

void set_device(Device device) {
  if (!device.is_cuda()) return;
  int count = cuda_device_count();
  if (count == 0) throw Error("cannot use " + device.str() + ": " + cuda_status());
  if (device.index < 0 || device.index >= count)
    throw Error("cannot use " + device.str() + ": this machine has " + std::to_string(count) + " CUDA device" +
                (count == 1 ? " (cuda:0)" : "s (cuda:0 to cuda:" + std::to_string(count - 1) + ")"));
  TG_CUDA_CHECK(cudaSetDevice(device.index));
}

#else
bool cuda_available() { return false; }
int cuda_device_count() { return 0; }
std::string cuda_status() { return no_cuda_message(); }
void set_device(Device device) {
  if (device.is_cuda()) throw Error("cannot use " + device.str() + ": " + no_cuda_message());
}
#endif

}  // namespace tg
