// Image classification data from a folder: IDX files (MNIST, Fashion-MNIST, KMNIST) or class
// subfolders of images, decoded once into memory and split into training, validation and test.
//
// Accepted layouts of `path`:
//   IDX      train-images-idx3-ubyte, train-labels-idx1-ubyte (each plain or .gz) and optionally
//            t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte: the test set.
//   folders  train/<class>/* with test/<class>/* (or val/<class>/*) as the test set; with both
//            test/ and val/, val/ is the validation set and test/ the test set;
//            or <class>/* directly, with no test set.
// Validation is carved from the training images (stratified: the same fraction of every class,
// chosen with `seed`) unless a val/ folder sits beside test/. The test set is kept apart so that
// model selection never sees it; mean and std come from the training split alone.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/image_set.h"

namespace tg {

struct ImageDataOptions {
  double val_fraction = 0.1;  // of the training split, carved with `seed`
  int64_t image_size = 0;     // 0: all images must share a size; else resize to image_size x image_size
  int64_t channels = 0;       // 0: from the data (IDX: 1; folders: 1 if every image is grey, else 3)
  uint64_t seed = 1337;
  bool skip_bad = false;  // skip (and count) undecodable files instead of failing
};

struct ImageData {
  ImageSet train, val, test;             // test may be empty (describe() says so)
  std::vector<std::string> class_names;  // folder names; Fashion-MNIST's names for its IDX files
                                         // (by the folder's name or a classes.txt); "0".."9" otherwise
  std::vector<float> mean, std;          // per channel, of the training split, in [0,1] pixel units
  std::string kind;                      // "idx" or "folder"
  std::string path;                      // the folder it was loaded from
  int64_t skipped_files = 0;
  std::string describe() const;  // one line for ./train's header
};

// True for a folder holding IDX training files or class subfolders of images (directly or under
// train/); decides from names and extensions without decoding anything.
bool is_image_data(const std::string& path);

// Loads `path` as above. Throws tg::Error, naming the path or file, for a path that is missing or
// neither layout, a folder with no images or only one class, a file that does not decode (unless
// skip_bad), images of different sizes without image_size, and every malformed IDX file.
ImageData load_image_data(const std::string& path, const ImageDataOptions& options);

// Splits `set` into training and validation images: round(fraction * n_c) images of each class c,
// drawn with `seed`, go to `val`; both keep the original order.
void split_validation(const ImageSet& set, double fraction, uint64_t seed, ImageSet& train, ImageSet& val);

// Fashion-MNIST's class names, in label order.
const std::vector<std::string>& fashion_mnist_class_names();

}  // namespace tg
