// data/idx.h and the IDX side of data/image_dataset.h: MNIST-style files written here, plain and
// gzip, then every kind of malformed header and body.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "data/idx.h"
#include "data/image_dataset.h"
#include "tensor/random.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

std::string big_endian(uint32_t v) {
  return std::string{char(v >> 24), char((v >> 16) & 255), char((v >> 8) & 255), char(v & 255)};
}

std::string idx_file(uint32_t magic, const std::vector<uint32_t>& dims, const std::vector<uint8_t>& body) {
  std::string bytes = big_endian(magic);
  for (uint32_t d : dims) bytes += big_endian(d);
  return bytes + std::string(body.begin(), body.end());
}

std::string gzip(const std::string& bytes) {
  uLongf size = compressBound(bytes.size()) + 64;
  std::string out(size, '\0');
  // deflateInit2 with windowBits 15 + 16 writes the gzip wrapper that .gz files carry.
  z_stream stream{};
  EXPECT_EQ(deflateInit2(&stream, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  stream.avail_in = static_cast<uInt>(bytes.size());
  stream.next_out = reinterpret_cast<Bytef*>(&out[0]);
  stream.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&stream, Z_FINISH), Z_STREAM_END);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

struct IdxSet {
  std::vector<uint8_t> pixels, labels;
};

IdxSet random_idx(Generator& gen, int64_t count, int64_t rows, int64_t cols, int classes) {
  IdxSet set;
  set.pixels.resize(count * rows * cols);
  for (uint8_t& p : set.pixels) p = static_cast<uint8_t>(gen.below(256));
  for (int64_t i = 0; i < count; i++) set.labels.push_back(static_cast<uint8_t>(i % classes));
  return set;
}

// Writes the four standard files of a dataset folder: train plain, test gzip.
void write_idx_folder(const std::string& folder, const IdxSet& train, const IdxSet& test, uint32_t rows,
                      uint32_t cols) {
  mkdir(folder.c_str(), 0755);
  auto put = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(folder + "/" + name, std::ios::binary) << bytes;
  };
  const uint32_t train_count = train.labels.size(), test_count = test.labels.size();
  put("train-images-idx3-ubyte", idx_file(0x803, {train_count, rows, cols}, train.pixels));
  put("train-labels-idx1-ubyte", idx_file(0x801, {train_count}, train.labels));
  put("t10k-images-idx3-ubyte.gz", gzip(idx_file(0x803, {test_count, rows, cols}, test.pixels)));
  put("t10k-labels-idx1-ubyte.gz", gzip(idx_file(0x801, {test_count}, test.labels)));
}

}  // namespace

TEST(Idx, ReadsPlainAndGzipFilesExactly) {
  Generator gen(11);
  TempDir dir;
  IdxSet set = random_idx(gen, 7, 5, 3, 4);
  for (bool compressed : {false, true}) {
    std::string images = idx_file(0x803, {7, 5, 3}, set.pixels), labels = idx_file(0x801, {7}, set.labels);
    std::string suffix = compressed ? ".gz" : "";
    ImageSet read = read_idx_pair(dir.write("images" + suffix, compressed ? gzip(images) : images),
                                  dir.write("labels" + suffix, compressed ? gzip(labels) : labels));
    EXPECT_EQ(read.size(), 7);
    EXPECT_EQ(read.height, 5);
    EXPECT_EQ(read.width, 3);
    EXPECT_EQ(read.channels, 1);
    EXPECT_EQ(read.pixels, set.pixels) << (compressed ? "gzip" : "plain");
    EXPECT_EQ(read.labels, std::vector<int32_t>(set.labels.begin(), set.labels.end()));
  }
}

TEST(Idx, WrongMagicNamesTheFileExpectedAndFound) {
  Generator gen(12);
  TempDir dir;
  IdxSet set = random_idx(gen, 2, 2, 2, 2);
  std::string labels = dir.write("labels", idx_file(0x801, {2}, set.labels));
  std::string images = dir.write("foreign", idx_file(0x12340803, {2, 2, 2}, set.pixels));
  EXPECT_ERROR_MENTIONS(read_idx_pair(images, labels), "'" + images + "'", "wrong magic", "expected 0x00000803",
                        "found 0x12340803");
  // A labels file given as the images file: right kind, wrong dimension count.
  EXPECT_ERROR_MENTIONS(read_idx_pair(labels, labels), "'" + labels + "'", "wrong number of dimensions",
                        "expected 3", "found 1");
  // An int32 (type 0x0C) images file.
  std::string ints = dir.write("ints", idx_file(0x0C03, {2, 2, 2}, set.pixels));
  EXPECT_ERROR_MENTIONS(read_idx_pair(ints, labels), "'" + ints + "'", "expected 0x00000803", "found 0x00000C03");
}

TEST(Idx, TruncatedFilesNameTheFileAndTheSizes) {
  Generator gen(13);
  TempDir dir;
  IdxSet set = random_idx(gen, 5, 3, 4, 2);
  std::string labels = dir.write("labels", idx_file(0x801, {5}, set.labels));
  std::string full = idx_file(0x803, {5, 3, 4}, set.pixels);  // 16-byte header + 60 bytes
  std::string body = dir.write("body", full.substr(0, full.size() - 10));
  EXPECT_ERROR_MENTIONS(read_idx_pair(body, labels), "'" + body + "' is truncated", "5 x 3 x 4", "needs 60 bytes",
                        "16-byte header", "found 50");
  std::string header = dir.write("header", full.substr(0, 9));
  EXPECT_ERROR_MENTIONS(read_idx_pair(header, labels), "'" + header + "' is truncated", "header needs 16",
                        "found 9");
  std::string gz = gzip(full);
  std::string cut = dir.write("cut.gz", gz.substr(0, gz.size() / 2));
  EXPECT_ERROR_MENTIONS(read_idx_pair(cut, labels), "'" + cut + "' is truncated", "needs 60 decompressed bytes",
                        "gzip stream ends early");
  std::string longer = dir.write("longer", full + "xyz");
  EXPECT_ERROR_MENTIONS(read_idx_pair(longer, labels), "'" + longer + "' is longer than its header", "expected 60");
  std::string empty_dim = dir.write("empty", idx_file(0x803, {5, 0, 4}, {}));
  EXPECT_ERROR_MENTIONS(read_idx_pair(empty_dim, labels), "'" + empty_dim + "' has an empty dimension", "5 x 0 x 4");
  EXPECT_ERROR_MENTIONS(read_idx_pair(dir.file("missing"), labels), "'" + dir.file("missing") + "' cannot be opened");
}

// The body is read in slices that start at 64 KB and double, so that a header claiming a
// gigabyte costs no more than the file holds: a body of 1.44 MB spans five slices and must read
// exactly, plain and gzip, and a 16-byte file claiming 1000 x 1000 x 1000 is simply truncated.
TEST(Idx, BodiesLongerThanOneSliceReadExactlyAndLyingHeadersAreTruncated) {
  Generator gen(15);
  TempDir dir;
  IdxSet set = random_idx(gen, 4, 600, 600, 3);
  std::string images = idx_file(0x803, {4, 600, 600}, set.pixels);
  std::string labels = dir.write("labels", idx_file(0x801, {4}, set.labels));
  for (const std::string& path : {dir.write("plain", images), dir.write("packed.gz", gzip(images))}) {
    ImageSet read = read_idx_pair(path, labels);
    EXPECT_EQ(read.pixels, set.pixels) << path;
  }
  EXPECT_ERROR_MENTIONS(read_idx_images(dir.write("extra", images + "z")), "is longer than its header");
  std::string liar = dir.write("liar", idx_file(0x803, {1000, 1000, 1000}, {}));
  EXPECT_ERROR_MENTIONS(read_idx_images(liar), "'" + liar + "' is truncated", "1000 x 1000 x 1000",
                        "needs 1000000000 bytes", "found 0");
}

TEST(Idx, ImageAndLabelCountsMustAgree) {
  Generator gen(14);
  TempDir dir;
  IdxSet set = random_idx(gen, 5, 2, 2, 2);
  std::string images = dir.write("images", idx_file(0x803, {5, 2, 2}, set.pixels));
  std::vector<uint8_t> four(set.labels.begin(), set.labels.begin() + 4);
  std::string labels = dir.write("labels", idx_file(0x801, {4}, four));
  EXPECT_ERROR_MENTIONS(read_idx_pair(images, labels), "'" + images + "' holds 5 images", "'" + labels + "' holds 4 labels");
}

TEST(Idx, FolderLoadsTrainValAndTest) {
  Generator gen(15);
  TempDir dir;
  IdxSet train = random_idx(gen, 40, 4, 3, 4), test = random_idx(gen, 9, 4, 3, 4);
  write_idx_folder(dir.file("digits"), train, test, 4, 3);
  EXPECT_TRUE(is_image_data(dir.file("digits")));
  ImageDataOptions options;
  options.val_fraction = 0.3;  // stratified: 3 of each class's 10 images
  ImageData data = load_image_data(dir.file("digits"), options);
  EXPECT_EQ(data.kind, "idx");
  EXPECT_EQ(data.train.size(), 28);
  EXPECT_EQ(data.val.size(), 12);
  for (int32_t c = 0; c < 4; c++) EXPECT_EQ(std::count(data.val.labels.begin(), data.val.labels.end(), c), 3);
  EXPECT_EQ(data.test.size(), 9);
  EXPECT_EQ(data.test.pixels, test.pixels);
  EXPECT_EQ(data.class_names, (std::vector<std::string>{"0", "1", "2", "3"}));
  EXPECT_NE(data.describe().find("28 train, 12 val, 9 test; 4x3x1, 4 classes"), std::string::npos) << data.describe();
}

TEST(Idx, ClassNamesFromClassesTxtOrFashionFolderName) {
  Generator gen(16);
  TempDir dir;
  IdxSet train = random_idx(gen, 12, 2, 2, 3), test = random_idx(gen, 3, 2, 2, 3);
  write_idx_folder(dir.file("named"), train, test, 2, 2);
  dir.write("named/classes.txt", "circle\nsquare\ntriangle\n");
  ImageDataOptions options;
  EXPECT_EQ(load_image_data(dir.file("named"), options).class_names,
            (std::vector<std::string>{"circle", "square", "triangle"}));
  dir.write("named/classes.txt", "circle\nsquare\n");
  EXPECT_ERROR_MENTIONS(load_image_data(dir.file("named"), options), "labels", "reach 2", "classes.txt' names only 2");
  write_idx_folder(dir.file("My-Fashion-MNIST"), train, test, 2, 2);
  EXPECT_EQ(load_image_data(dir.file("My-Fashion-MNIST"), options).class_names, fashion_mnist_class_names());
}

TEST(Idx, ChannelsAndImageSizeConvert) {
  Generator gen(17);
  TempDir dir;
  IdxSet train = random_idx(gen, 10, 4, 4, 2), test = random_idx(gen, 2, 4, 4, 2);
  // Constant images: resizing keeps a constant (every stb filter's weights sum to one).
  for (size_t i = 0; i < train.pixels.size(); i++) train.pixels[i] = static_cast<uint8_t>(20 * (i / 16));
  write_idx_folder(dir.file("d"), train, test, 4, 4);
  ImageDataOptions options;
  options.val_fraction = 0;
  options.channels = 3;
  options.image_size = 7;
  ImageData data = load_image_data(dir.file("d"), options);
  ASSERT_EQ(data.train.height, 7);
  ASSERT_EQ(data.train.channels, 3);
  ASSERT_EQ(data.test.height, 7);
  for (int64_t i = 0; i < data.train.size(); i++)
    for (int64_t p = 0; p < 7 * 7 * 3; p++) ASSERT_EQ(data.train.image(i)[p], 20 * i) << "image " << i << " byte " << p;
}

TEST(Idx, MissingCompanionFilesAreNamed) {
  Generator gen(18);
  TempDir dir;
  IdxSet set = random_idx(gen, 4, 2, 2, 2);
  mkdir(dir.file("d").c_str(), 0755);
  dir.write("d/train-images-idx3-ubyte", idx_file(0x803, {4, 2, 2}, set.pixels));
  EXPECT_ERROR_MENTIONS(load_image_data(dir.file("d"), ImageDataOptions()), "no train-labels-idx1-ubyte[.gz]");
  dir.write("d/train-labels-idx1-ubyte", idx_file(0x801, {4}, set.labels));
  dir.write("d/t10k-images-idx3-ubyte", idx_file(0x803, {4, 2, 2}, set.pixels));
  EXPECT_ERROR_MENTIONS(load_image_data(dir.file("d"), ImageDataOptions()), "t10k-images-idx3-ubyte",
                        "no t10k-labels-idx1-ubyte[.gz]");
}

// Debian's dataset-fashion-mnist (installed by `make data`).
TEST(IdxFashionMnist, DebianFilesLoad) {
  const std::string folder = "/usr/share/datasets/fashion-mnist";
  struct stat info;
  if (stat(folder.c_str(), &info) != 0)
    GTEST_SKIP() << folder << " is not installed (make data installs Debian's dataset-fashion-mnist)";
  ImageDataOptions options;  // val_fraction 0.1: 600 of each class's 6000 training images
  ImageData data = load_image_data(folder, options);
  EXPECT_EQ(data.train.size() + data.val.size(), 60000);
  EXPECT_EQ(data.val.size(), 6000);
  EXPECT_EQ(data.test.size(), 10000);
  EXPECT_EQ(data.train.height, 28);
  EXPECT_EQ(data.train.width, 28);
  EXPECT_EQ(data.train.channels, 1);
  EXPECT_EQ(data.class_names, fashion_mnist_class_names());
  for (const ImageSet* set : {&data.train, &data.val, &data.test}) {
    std::set<int32_t> labels(set->labels.begin(), set->labels.end());
    EXPECT_EQ(*labels.begin(), 0);
    EXPECT_EQ(*labels.rbegin(), 9);
  }
  for (int32_t c = 0; c < 10; c++) EXPECT_EQ(std::count(data.val.labels.begin(), data.val.labels.end(), c), 600);
  // Fashion-MNIST's training pixels are known to have mean 0.2860 and std 0.3530.
  EXPECT_NEAR(data.mean[0], 0.2860, 0.002);
  EXPECT_NEAR(data.std[0], 0.3530, 0.002);
}
