#include "data/image_dataset.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "data/idx.h"
#include "data/image_file.h"
#include "data/image_folder.h"
#include "tensor/error.h"
#include "tensor/random.h"

namespace tg {

namespace fs = std::filesystem;

const std::vector<std::string>& fashion_mnist_class_names() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                 "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

namespace {

const char* const kLayouts =
    "a folder of IDX files (train-images-idx3-ubyte and train-labels-idx1-ubyte, plain or .gz) or of class "
    "subfolders holding PNG, JPEG or BMP files";

bool is_directory(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// Grey IDX images as RGB (channels = 3) and resized to image_size when asked.
void convert_idx_set(ImageSet& set, const ImageDataOptions& options) {
  const int64_t side = options.image_size;
  if (side > 0 && (set.height != side || set.width != side)) {
    std::vector<uint8_t> resized(static_cast<size_t>(set.size() * side * side));
#pragma omp parallel for
    for (int64_t i = 0; i < set.size(); i++)
      resize_image(set.image(i), set.height, set.width, 1, resized.data() + i * side * side, side, side);
    set.pixels = std::move(resized);
    set.height = set.width = side;
  }
  if (options.channels == 3) {
    std::vector<uint8_t> rgb(set.pixels.size() * 3);
    for (size_t i = 0; i < set.pixels.size(); i++) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = set.pixels[i];
    set.pixels = std::move(rgb);
    set.channels = 3;
  }
}

// Names from `folder/classes.txt` (one per line), Fashion-MNIST's by the folder's name, else
// "0", "1", ... up to the largest label.
std::vector<std::string> idx_class_names(const std::string& folder, int32_t largest_label) {
  std::vector<std::string> names;
  std::ifstream classes(folder + "/classes.txt");
  for (std::string line; std::getline(classes, line);) {
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  if (!names.empty()) {
    TG_CHECK(largest_label < static_cast<int32_t>(names.size()),
             "IDX labels in '" + folder + "' reach " + std::to_string(largest_label) + " but '" + folder +
                 "/classes.txt' names only " + std::to_string(names.size()) + " classes");
    return names;
  }
  std::error_code error;
  std::string name = lower(fs::weakly_canonical(fs::path(folder), error).filename().string());
  if (name.find("fashion") != std::string::npos) {
    TG_CHECK(largest_label < 10, "IDX labels in '" + folder + "' reach " + std::to_string(largest_label) +
                                     " but Fashion-MNIST has 10 classes (0 to 9)");
    return fashion_mnist_class_names();
  }
  for (int32_t label = 0; label <= largest_label; label++) names.push_back(std::to_string(label));
  return names;
}

void load_idx(const std::string& path, const ImageDataOptions& options, ImageData& data, ImageSet& train) {
  const std::string train_images = find_idx_file(path, IdxFileNames::train_images);
  const std::string train_labels = find_idx_file(path, IdxFileNames::train_labels);
  TG_CHECK(!train_labels.empty(), "image data '" + path + "' has " + train_images + " but no " +
                                      IdxFileNames::train_labels + "[.gz] beside it");
  train = read_idx_pair(train_images, train_labels);
  const std::string test_images = find_idx_file(path, IdxFileNames::test_images);
  const std::string test_labels = find_idx_file(path, IdxFileNames::test_labels);
  TG_CHECK(test_images.empty() == test_labels.empty(),
           "image data '" + path + "' has " + (test_images.empty() ? test_labels : test_images) + " but no " +
               (test_images.empty() ? IdxFileNames::test_images : IdxFileNames::test_labels) + "[.gz] beside it");
  if (!test_images.empty()) {
    data.test = read_idx_pair(test_images, test_labels);
    TG_CHECK(data.test.height == train.height && data.test.width == train.width,
             "IDX test images '" + test_images + "' are " + std::to_string(data.test.height) + "x" +
                 std::to_string(data.test.width) + " but the training images '" + train_images + "' are " +
                 std::to_string(train.height) + "x" + std::to_string(train.width));
  }
  int32_t largest = 0;
  for (const ImageSet* set : {&train, &data.test})
    for (int32_t label : set->labels) largest = std::max(largest, label);
  data.class_names = idx_class_names(path, largest);
  convert_idx_set(train, options);
  if (data.test.size() > 0) convert_idx_set(data.test, options);
  data.kind = "idx";
}

void load_folders(const std::string& path, const ImageDataOptions& options, ImageData& data, ImageSet& train,
                  bool& has_val_folder) {
  const std::string train_folder = path + "/train";
  const bool split = is_directory(train_folder);
  std::vector<ImageFolderListing> listings = {list_image_folder(split ? train_folder : path)};
  // Copies, not references: `listings` grows below.
  const std::vector<std::string> class_names = listings.front().class_names;
  const std::string training_folder_name = listings.front().folder;
  TG_CHECK(class_names.size() >= 2, "image folder '" + training_folder_name + "' holds one class ('" +
                                        class_names.front() + "'); a classifier needs at least two class subfolders");
  const bool has_test = split && is_directory(path + "/test");
  has_val_folder = split && is_directory(path + "/val");
  for (const char* name : {"test", "val"}) {
    if (!(name == std::string("test") ? has_test : has_val_folder)) continue;
    listings.push_back(list_image_folder(path + "/" + name));
    relabel_listing(listings.back(), class_names, training_folder_name);
  }
  FolderDecodeOptions decode;
  decode.image_size = options.image_size, decode.channels = options.channels, decode.skip_bad = options.skip_bad;
  std::vector<ImageSet> sets = decode_image_folders(listings, decode, data.skipped_files);
  data.class_names = class_names;
  train = std::move(sets[0]);
  // test/ is the test set; val/ is too when it stands alone, and the validation set beside test/.
  if (has_test) data.test = std::move(sets[1]);
  if (has_val_folder) (has_test ? data.val : data.test) = std::move(sets.back());
  has_val_folder = has_val_folder && has_test;
  data.kind = "folder";
}

std::string shape_text(const ImageSet& set) {
  return std::to_string(set.height) + "x" + std::to_string(set.width) + "x" + std::to_string(set.channels);
}

}  // namespace

bool is_image_data(const std::string& path) {
  if (!is_directory(path)) return false;
  if (!find_idx_file(path, IdxFileNames::train_images).empty()) return true;
  // An image file two or three levels down: <class>/x.png, or train/<class>/x.png.
  std::error_code error;
  for (auto it = fs::recursive_directory_iterator(path, error); !error && it != fs::recursive_directory_iterator();
       it.increment(error)) {
    if (it.depth() >= 2) it.disable_recursion_pending();
    if (it.depth() >= 1 && it->is_regular_file() && has_image_extension(it->path().string())) return true;
  }
  return false;
}

void split_validation(const ImageSet& set, double fraction, uint64_t seed, ImageSet& train, ImageSet& val) {
  TG_CHECK(fraction >= 0.0 && fraction < 1.0,
           "split_validation: val_fraction must be in [0, 1), found " + std::to_string(fraction));
  int32_t classes = 0;
  for (int32_t label : set.labels) classes = std::max(classes, label + 1);
  std::vector<std::vector<int64_t>> by_class(classes);
  for (int64_t i = 0; i < set.size(); i++) by_class[set.labels[i]].push_back(i);
  Generator gen(seed);
  std::vector<int64_t> train_indices, val_indices;
  for (std::vector<int64_t>& members : by_class) {
    // The first k of a seeded Fisher-Yates shuffle.
    const int64_t n = static_cast<int64_t>(members.size());
    const int64_t k = std::llround(fraction * static_cast<double>(n));
    for (int64_t i = 0; i < k; i++) std::swap(members[i], members[i + gen.below(n - i)]);
    val_indices.insert(val_indices.end(), members.begin(), members.begin() + k);
    train_indices.insert(train_indices.end(), members.begin() + k, members.end());
  }
  std::sort(train_indices.begin(), train_indices.end());
  std::sort(val_indices.begin(), val_indices.end());
  train = select_images(set, train_indices);
  val = select_images(set, val_indices);
}

ImageData load_image_data(const std::string& path, const ImageDataOptions& options) {
  TG_CHECK(options.val_fraction >= 0.0 && options.val_fraction < 1.0,
           "image data: val_fraction must be in [0, 1), found " + std::to_string(options.val_fraction));
  TG_CHECK(options.image_size >= 0, "image data: image_size must be 0 (keep the images' size) or positive, found " +
                                        std::to_string(options.image_size));
  TG_CHECK(options.channels == 0 || options.channels == 1 || options.channels == 3,
           "image data: channels must be 0 (from the data), 1 or 3, found " + std::to_string(options.channels));
  struct stat info;
  TG_CHECK(stat(path.c_str(), &info) == 0, "image data '" + path + "' does not exist");
  TG_CHECK(S_ISDIR(info.st_mode), "image data '" + path + "' is a file, not " + kLayouts);

  ImageData data;
  data.path = path;
  ImageSet all_train;
  bool has_val_folder = false;
  if (!find_idx_file(path, IdxFileNames::train_images).empty()) {
    load_idx(path, options, data, all_train);
  } else {
    TG_CHECK(find_idx_file(path, IdxFileNames::train_labels).empty(),
             "image data '" + path + "' has " + IdxFileNames::train_labels + " but no " +
                 IdxFileNames::train_images + "[.gz] beside it");
    bool has_subfolder = false;
    std::error_code error;
    for (const auto& entry : fs::directory_iterator(path, error))
      has_subfolder |= entry.is_directory() && entry.path().filename().string().rfind('.', 0) != 0;
    TG_CHECK(has_subfolder, "image data '" + path + "' is neither " + kLayouts);
    load_folders(path, options, data, all_train, has_val_folder);
  }
  if (has_val_folder)
    data.train = std::move(all_train);
  else
    split_validation(all_train, options.val_fraction, options.seed, data.train, data.val);
  TG_CHECK(data.train.size() > 0, "image data '" + path + "': no training images are left after the validation split");
  channel_mean_std(data.train, data.mean, data.std);
  return data;
}

std::string ImageData::describe() const {
  std::string line = "images " + path + " (" + kind + "): " + std::to_string(train.size()) + " train, " +
                     std::to_string(val.size()) + " val, " +
                     (test.size() > 0 ? std::to_string(test.size()) + " test" : std::string("no test set")) + "; " +
                     shape_text(train) + ", " + std::to_string(class_names.size()) + " classes";
  if (skipped_files > 0) line += "; " + std::to_string(skipped_files) + " unreadable files skipped";
  return line;
}

}  // namespace tg
