#include "tensor/device.h"

#include "tensor/error.h"

namespace tg {

std::string Device::str() const {
  return type == DeviceType::CPU ? "cpu" : "cuda:" + std::to_string(index);
}

Device parse_device(const std::string& text) {
  if (text == "cpu") return Device::cpu();
  if (text == "cuda") return Device::cuda(0);
  if (text.rfind("cuda:", 0) == 0 && text.size() > 5 && text.find_first_not_of("0123456789", 5) == std::string::npos)
    return Device::cuda(std::stoi(text.substr(5)));
  throw Error("unknown device '" + text + "' (expected cpu, cuda or cuda:N)");
}

std::string no_cuda_message() {
  return "tilegrad was built without CUDA (nvcc not found at build time, or CUDA=0)";
}

#ifndef TG_CUDA
bool cuda_available() { return false; }
int cuda_device_count() { return 0; }
std::string cuda_status() { return no_cuda_message(); }
void set_device(Device device) {
  if (device.is_cuda()) throw Error("cannot use " + device.str() + ": " + no_cuda_message());
}
#endif

}  // namespace tg
