#include "tensor/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "tensor/json_excerpt.h"

namespace tg {

// The format is little-endian and we copy bytes straight into tensors.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes a little-endian host");

// ordered_json keeps the header's key order, so tensors that share an offset (zero-size ones) keep
// the order the writer gave them.
using Json = nlohmann::ordered_json;

// The reference implementation refuses headers above 100 MB; a length beyond that is a foreign or
// corrupt file, and refusing it early avoids a huge allocation.
static constexpr uint64_t kMaxHeaderBytes = 100'000'000;
static const char* const kMetadataKey = "__metadata__";

const char* safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "F32";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::I32: return "I32";
    case DType::U8: return "U8";
  }
  return "?";
}

static bool parse_safetensors_dtype(const std::string& name, DType* out) {
  for (DType d : {DType::F32, DType::BF16, DType::F16, DType::I32, DType::U8})
    if (name == safetensors_dtype_name(d)) {
      *out = d;
      return true;
    }
  return false;
}

// ---- SafetensorsData -------------------------------------------------------------------------

bool SafetensorsData::contains(const std::string& name) const {
  for (const auto& entry : tensors)
    if (entry.first == name) return true;
  return false;
}

const Tensor& SafetensorsData::at(const std::string& name) const {
  for (const auto& entry : tensors)
    if (entry.first == name) return entry.second;
  throw Error("safetensors: tensor \"" + name + "\" not found in " + (path.empty() ? std::string("(in memory)") : path) +
              " (it holds " + std::to_string(tensors.size()) + " tensors)");
}

// ---- writer --------------------------------------------------------------------------------

namespace {

class FileWriter {
 public:
  FileWriter(const std::string& target, const std::string& tmp) : target_(target), tmp_(tmp) {
    fd_ = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("cannot create " + tmp_);
  }
  ~FileWriter() {
    // Only reached without commit() when something threw: leave no half-written temp file behind.
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }

  void write(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t written = ::write(fd_, p, std::min<size_t>(n, size_t(1) << 30));
      if (written < 0) {
        if (errno == EINTR) continue;
        fail("cannot write " + tmp_);
      }
      p += written;
      n -= static_cast<size_t>(written);
    }
  }

  // fsync the data, rename over the target, fsync the directory so the rename itself is durable.
  void commit() {
    if (::fsync(fd_) != 0) fail("cannot fsync " + tmp_);
    int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) fail("cannot close " + tmp_);
    if (::rename(tmp_.c_str(), target_.c_str()) != 0) fail("cannot rename " + tmp_ + " to " + target_);
    committed_ = true;
    std::string dir = std::filesystem::path(target_).parent_path().string();
    if (dir.empty()) dir = ".";
    int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) fail("cannot open directory " + dir + " to fsync it");
    // Some filesystems cannot sync a directory and say EINVAL; the rename has happened regardless.
    int sync_rc = ::fsync(dir_fd);
    int sync_errno = errno;
    ::close(dir_fd);
    if (sync_rc != 0 && sync_errno != EINVAL) {
      errno = sync_errno;
      fail("cannot fsync directory " + dir);
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error("save_safetensors: " + target_ + ": " + what + ": " + std::strerror(errno));
  }

  std::string target_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const std::string op = "save_safetensors: " + path + ": ";
  Json header = Json::object();
  if (!metadata.empty()) header[kMetadataKey] = Json(metadata);

  std::set<std::string> seen;
  std::vector<Tensor> host;  // contiguous CPU copies (or the tensors themselves when already so)
  host.reserve(tensors.size());
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == kMetadataKey) throw Error(op + "\"" + name + "\" is reserved for the metadata and cannot name a tensor");
    if (!seen.insert(name).second) throw Error(op + "tensor name \"" + name + "\" appears twice");
    if (!tensor.defined()) throw Error(op + "tensor \"" + name + "\" is undefined");
    Tensor t = tensor.to(Device::cpu()).contiguous();
    Json entry = Json::object();
    entry["dtype"] = safetensors_dtype_name(t.dtype());
    entry["shape"] = Json(t.shape());
    entry["data_offsets"] = Json::array({offset, offset + t.nbytes()});
    header[name] = std::move(entry);
    offset += t.nbytes();
    host.push_back(std::move(t));
  }

  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    throw Error(op + "cannot encode the header (tensor names and metadata must be valid UTF-8): " + e.what());
  }
  // Pad with spaces to a multiple of 8 so the data section starts 8-byte aligned, as the reference
  // writer does; JSON ignores trailing whitespace.
  text.append((8 - text.size() % 8) % 8, ' ');
  uint64_t header_len = text.size();

  FileWriter out(path, path + ".tmp");
  out.write(&header_len, sizeof header_len);
  out.write(text.data(), text.size());
  for (const Tensor& t : host)
    if (t.nbytes() > 0) out.write(t.data_raw(), t.nbytes());
  out.commit();
}

// ---- reader --------------------------------------------------------------------------------

namespace {

struct Entry {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

class Loader {
 public:
  explicit Loader(const std::string& path) : path_(path) {}

  SafetensorsData load() {
    open();
    uint64_t header_len = read_header_length();
    Json header = parse_header(header_len);
    data_start_ = 8 + header_len;
    uint64_t data_len = file_size_ - data_start_;

    SafetensorsData result;
    result.path = path_;
    std::vector<Entry> entries;
    for (const auto& [name, value] : header.items()) {
      if (name == kMetadataKey) result.metadata = parse_metadata(value);
      else entries.push_back(parse_entry(name, value, data_len));
    }
    check_coverage(entries, data_len);

    result.tensors.reserve(entries.size());
    for (const Entry& e : entries) result.tensors.emplace_back(e.name, read_tensor(e));
    return result;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw Error("load_safetensors: " + path_ + ": " + what); }

  void open() {
    std::error_code ec;
    auto status = std::filesystem::status(path_, ec);
    if (ec || !std::filesystem::exists(status)) fail("no such file");
    if (std::filesystem::is_directory(status)) fail("is a directory, expected a .safetensors file");
    file_.open(path_, std::ios::binary);
    if (!file_) fail(std::string("cannot open: ") + std::strerror(errno));
    file_.seekg(0, std::ios::end);
    std::streamoff size = file_.tellg();
    if (size < 0) fail("cannot determine the file size");
    file_size_ = static_cast<uint64_t>(size);
  }

  void read_at(uint64_t position, void* out, uint64_t n, const std::string& what) {
    file_.clear();
    file_.seekg(static_cast<std::streamoff>(position));
    file_.read(static_cast<char*>(out), static_cast<std::streamsize>(n));
    if (!file_ || static_cast<uint64_t>(file_.gcount()) != n)
      fail("read error at byte " + std::to_string(position) + " while reading " + what);
  }

  uint64_t read_header_length() {
    if (file_size_ < 8)
      fail("file is " + std::to_string(file_size_) +
           " bytes, shorter than the 8-byte header length that starts a safetensors file");
    uint64_t n = 0;
    read_at(0, &n, 8, "the header length");
    if (n > kMaxHeaderBytes)
      fail("header length " + std::to_string(n) + " exceeds the " + std::to_string(kMaxHeaderBytes) +
           "-byte limit (not a safetensors file, or a corrupt one)");
    if (n > file_size_ - 8)
      fail("header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(file_size_) +
           " bytes; truncated?)");
    if (n < 2) fail("header length " + std::to_string(n) + " is too small to hold a JSON object");
    return n;
  }

  Json parse_header(uint64_t n) {
    std::string text(n, '\0');
    read_at(8, text.data(), n, "the header");
    // nlohmann keeps the last of two equal keys silently; a file with a duplicate tensor name is
    // ambiguous, so the callback records the first repeated key in any object.
    std::vector<std::set<std::string>> open_objects;
    std::string duplicate;
    auto on_event = [&](int, Json::parse_event_t event, Json& parsed) {
      if (event == Json::parse_event_t::object_start) open_objects.emplace_back();
      else if (event == Json::parse_event_t::object_end && !open_objects.empty()) open_objects.pop_back();
      else if (event == Json::parse_event_t::key && !open_objects.empty() && parsed.is_string() &&
               !open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty())
        duplicate = parsed.get<std::string>();
      return true;
    };
    Json header;
    try {
      header = Json::parse(text, on_event);
    } catch (const nlohmann::json::exception& e) {
      fail(std::string("header is not valid JSON: ") + e.what());
    }
    if (!header.is_object()) fail(std::string("header is a JSON ") + header.type_name() + ", expected an object");
    if (!duplicate.empty()) fail("key \"" + duplicate + "\" appears twice in the header");
    return header;
  }

  std::map<std::string, std::string> parse_metadata(const Json& value) {
    if (!value.is_object())
      fail(std::string("\"") + kMetadataKey + "\" is a JSON " + value.type_name() + ", expected an object of strings");
    std::map<std::string, std::string> metadata;
    for (const auto& [key, item] : value.items()) {
      if (!item.is_string())
        fail(std::string("metadata value \"") + key + "\" is a JSON " + item.type_name() + ", expected a string");
      metadata[key] = item.get<std::string>();
    }
    return metadata;
  }

  // A non-negative integer that fits int64; `what` names it in the error.
  uint64_t parse_count(const Json& value, const std::string& what) {
    if (value.is_number_unsigned()) {
      uint64_t v = value.get<uint64_t>();
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) fail(what + " " + std::to_string(v) + " is too large");
      return v;
    }
    if (value.is_number_integer()) fail(what + " is negative (" + std::to_string(value.get<int64_t>()) + ")");
    if (value.is_number_float()) fail(what + " is not an integer (" + value.dump() + ")");
    fail(what + " is a JSON " + value.type_name() + ", expected a non-negative integer");
  }

  Entry parse_entry(const std::string& name, const Json& value, uint64_t data_len) {
    const std::string where = "tensor \"" + name + "\": ";
    if (!value.is_object()) fail(where + "entry is a JSON " + value.type_name() + ", expected an object");
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!value.contains(field)) fail(where + "missing field \"" + field + "\"");
    Entry e;
    e.name = name;

    const Json& dtype = value["dtype"];
    if (!dtype.is_string()) fail(where + "\"dtype\" is a JSON " + dtype.type_name() + ", expected a string");
    if (!parse_safetensors_dtype(dtype.get<std::string>(), &e.dtype))
      fail(where + "dtype \"" + dtype.get<std::string>() + "\" is not supported (tilegrad reads F32, BF16, F16, I32, U8)");

    const Json& shape = value["shape"];
    if (!shape.is_array()) fail(where + "\"shape\" is a JSON " + shape.type_name() + ", expected an array");
    // Byte size with overflow checks: a crafted shape must not wrap around to a small number. The
    // bound covers the product of the nonzero sizes: a zero makes the tensor empty, but its strides
    // are still products of the other sizes and must fit int64 ([0, 2^40, 2^40] is refused).
    const uint64_t limit = static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / dtype_size(e.dtype);
    uint64_t extent = 1, numel = 1;
    for (size_t i = 0; i < shape.size(); i++) {
      uint64_t dim = parse_count(shape[i], where + "shape[" + std::to_string(i) + "]");
      e.shape.push_back(static_cast<int64_t>(dim));
      if (dim != 0 && extent > limit / dim)
        fail(where + "shape " + shape_str(e.shape) + (i + 1 < shape.size() ? " (and more sizes)" : "") +
             " is too large: its nonzero sizes multiply past 2^63 bytes");
      extent *= std::max<uint64_t>(dim, 1);
      numel *= dim;
    }
    const uint64_t nbytes = numel * dtype_size(e.dtype);

    const Json& offsets = value["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2)
      fail(where + "\"data_offsets\" must be an array of two integers [begin, end], found " + json_excerpt(offsets));
    e.begin = parse_count(offsets[0], where + "data_offsets begin");
    e.end = parse_count(offsets[1], where + "data_offsets end");
    if (e.begin > e.end)
      fail(where + "data_offsets begin " + std::to_string(e.begin) + " is after end " + std::to_string(e.end));
    if (e.end > data_len)
      fail(where + "data_offsets end " + std::to_string(e.end) + " is beyond the data section (" +
           std::to_string(data_len) + " bytes; truncated file?)");
    if (e.end - e.begin != nbytes)
      fail(where + "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + ") span " +
           std::to_string(e.end - e.begin) + " bytes but dtype " + dtype.get<std::string>() + " and shape " +
           shape_str(e.shape) + " need " + std::to_string(nbytes));
    return e;
  }

  // Sorts the entries into file order and checks that they tile [0, data_len) exactly.
  void check_coverage(std::vector<Entry>& entries, uint64_t data_len) {
    std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    uint64_t covered = 0;
    for (size_t i = 0; i < entries.size(); i++) {
      const Entry& e = entries[i];
      if (e.begin < covered)
        fail("tensor \"" + e.name + "\" (bytes " + std::to_string(e.begin) + ".." + std::to_string(e.end) +
             ") overlaps tensor \"" + entries[i - 1].name + "\" (bytes " + std::to_string(entries[i - 1].begin) + ".." +
             std::to_string(entries[i - 1].end) + ")");
      if (e.begin > covered)
        fail("bytes " + std::to_string(covered) + ".." + std::to_string(e.begin) +
             " of the data section belong to no tensor (a gap before \"" + e.name + "\")");
      covered = e.end;
    }
    if (covered != data_len)
      fail("the data section has " + std::to_string(data_len) + " bytes but the tensors cover only " +
           std::to_string(covered) + " (trailing bytes)");
  }

  Tensor read_tensor(const Entry& e) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    uint64_t n = e.end - e.begin;
    if (n > 0) read_at(data_start_ + e.begin, t.data_raw(), n, "tensor \"" + e.name + "\"");
    return t;
  }

  std::string path_;
  std::ifstream file_;
  uint64_t file_size_ = 0;
  uint64_t data_start_ = 0;
};

}  // namespace

// Reads with std::ifstream straight into each tensor's own storage, rather than mmap: tensors must
// own 64-byte-aligned Storage that outlives the file, so a mapping would be copied anyway; this way
// every byte is copied once and peak memory is the file's size.
SafetensorsData load_safetensors(const std::string& path) { return Loader(path).load(); }

}  // namespace tg
