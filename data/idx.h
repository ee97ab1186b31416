// IDX files as MNIST, Fashion-MNIST and KMNIST ship them, plain or gzip-compressed.
//
// An IDX file is a 4-byte magic (two zero bytes, a type code, the number of dimensions), one
// big-endian uint32 per dimension, then the body in row-major order. Images are unsigned bytes
// in 3 dimensions (magic 0x00000803 = 2051: count, rows, columns); labels unsigned bytes in 1
// (0x00000801 = 2049: count). Every field is checked and each error names the file, what was
// expected and what was found.
#pragma once
#include <string>

#include "data/image_set.h"

namespace tg {

// The standard file names in a dataset folder; each may also carry a ".gz" suffix.
struct IdxFileNames {
  static constexpr const char* train_images = "train-images-idx3-ubyte";
  static constexpr const char* train_labels = "train-labels-idx1-ubyte";
  static constexpr const char* test_images = "t10k-images-idx3-ubyte";
  static constexpr const char* test_labels = "t10k-labels-idx1-ubyte";
};

// An images file and its labels file as one set with channels = 1. Throws tg::Error when either
// is malformed or their counts disagree.
ImageSet read_idx_pair(const std::string& images_path, const std::string& labels_path);

// An images file alone (./classify --idx): labels are all 0.
ImageSet read_idx_images(const std::string& images_path);

// `folder/name` or `folder/name.gz`, whichever exists (the plain file first); "" when neither.
std::string find_idx_file(const std::string& folder, const std::string& name);

}  // namespace tg
