// Where a tensor's memory lives. One binary serves both devices; the device is a run-time value.
#pragma once
#include <cstdint>
#include <string>

namespace tg {

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::CUDA, index}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device& other) const { return type == other.type && index == other.index; }
  bool operator!=(const Device& other) const { return !(*this == other); }
  std::string str() const;  // "cpu", "cuda:0"
};

// "cpu", "cuda", "cuda:N". Throws tg::Error naming the text otherwise.
Device parse_device(const std::string& text);

// True when this binary was built with CUDA and a GPU is visible.
bool cuda_available();
int cuda_device_count();
// Why cuda_available() says what it says, for skip messages and --device errors: "built without
// CUDA", "no CUDA device (cudaGetDeviceCount: ...)", or "2 devices: NVIDIA H100 ...".
std::string cuda_status();
// Makes `device` current for this thread (cudaSetDevice); a no-op for the CPU. Throws naming the
// index and the number of devices when it does not exist.
void set_device(Device device);
// Message used by every op asked to run on a device this build cannot serve.
std::string no_cuda_message();

}  // namespace tg
