#include "data/image_folder.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "data/image_file.h"
#include "tensor/error.h"

namespace tg {

namespace fs = std::filesystem;

namespace {

bool hidden(const fs::path& path) { return path.filename().string().rfind('.', 0) == 0; }

// Every non-hidden regular file at any depth below `folder`, sorted; hidden folders are skipped.
std::vector<std::string> files_below(const fs::path& folder) {
  std::vector<std::string> files;
  std::error_code error;
  for (auto it = fs::recursive_directory_iterator(folder, fs::directory_options::follow_directory_symlink, error);
       !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    if (hidden(it->path())) {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file()) files.push_back(it->path().string());
  }
  TG_CHECK(!error, "image folder '" + folder.string() + "' cannot be listed: " + error.message());
  std::sort(files.begin(), files.end());
  return files;
}

std::string size_text(int64_t height, int64_t width) { return std::to_string(width) + "x" + std::to_string(height); }

}  // namespace

ImageFolderListing list_image_folder(const std::string& folder) {
  ImageFolderListing listing;
  listing.folder = folder;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(folder, error))
    if (!hidden(entry.path()) && entry.is_directory()) listing.class_names.push_back(entry.path().filename().string());
  TG_CHECK(!error, "image folder '" + folder + "' cannot be listed: " + error.message());
  TG_CHECK(!listing.class_names.empty(), "image folder '" + folder +
                                             "' has no class subfolders (expected one subfolder per class holding "
                                             "PNG, JPEG or BMP files)");
  std::sort(listing.class_names.begin(), listing.class_names.end());
  std::vector<std::string> empty;
  for (size_t label = 0; label < listing.class_names.size(); label++) {
    std::vector<std::string> files = files_below(fs::path(folder) / listing.class_names[label]);
    if (files.empty()) empty.push_back(listing.class_names[label]);
    for (std::string& file : files) {
      listing.files.push_back(std::move(file));
      listing.labels.push_back(static_cast<int32_t>(label));
    }
  }
  // Judged by extension here: a folder without a single image name is not image data at all,
  // while a stray non-image among images is the decoder's (and skip_bad's) business.
  TG_CHECK(std::any_of(listing.files.begin(), listing.files.end(), has_image_extension),
           "image folder '" + folder + "' holds no images: none of the files in its " +
               std::to_string(listing.class_names.size()) +
               " subfolders is a .png, .jpg, .jpeg or .bmp (expected one subfolder per class holding images)");
  TG_CHECK(empty.empty(), "class folder '" + folder + "/" + empty.front() + "' holds no images" +
                              (empty.size() > 1 ? " (nor do " + std::to_string(empty.size() - 1) + " other classes)" : ""));
  return listing;
}

void relabel_listing(ImageFolderListing& listing, const std::vector<std::string>& class_names,
                     const std::string& training_folder) {
  std::map<std::string, int32_t> label_of;
  for (size_t i = 0; i < class_names.size(); i++) label_of[class_names[i]] = static_cast<int32_t>(i);
  std::vector<int32_t> new_label(listing.class_names.size());
  for (size_t i = 0; i < listing.class_names.size(); i++) {
    auto found = label_of.find(listing.class_names[i]);
    TG_CHECK(found != label_of.end(), "image folder '" + listing.folder + "' has class '" + listing.class_names[i] +
                                          "' that the training folder '" + training_folder + "' lacks");
    new_label[i] = found->second;
  }
  for (int32_t& label : listing.labels) label = new_label[label];
  listing.class_names = class_names;
}

std::vector<ImageSet> decode_image_folders(const std::vector<ImageFolderListing>& listings,
                                           const FolderDecodeOptions& options, int64_t& skipped) {
  TG_CHECK(options.channels == 0 || options.channels == 1 || options.channels == 3,
           "image folder: channels must be 0 (from the data), 1 or 3, found " + std::to_string(options.channels));
  TG_CHECK(options.image_size >= 0, "image folder: image_size must be 0 (keep) or positive, found " +
                                        std::to_string(options.image_size));
  // One flat list of files, decoded in parallel; errors are kept per file and reported in file
  // order afterwards, so the message does not depend on the thread schedule.
  std::vector<const std::string*> files;
  for (const ImageFolderListing& listing : listings)
    for (const std::string& file : listing.files) files.push_back(&file);
  const int64_t count = static_cast<int64_t>(files.size());
  std::vector<DecodedImage> images(count);
  std::vector<std::string> errors(count);
  const int64_t side = options.image_size;
#pragma omp parallel for schedule(dynamic, 8)
  for (int64_t i = 0; i < count; i++) {
    try {
      DecodedImage image = decode_image_file(*files[i], options.channels);
      if (side > 0 && (image.height != side || image.width != side)) {
        DecodedImage resized;
        resized.height = resized.width = side, resized.channels = image.channels;
        resized.pixels.resize(static_cast<size_t>(side * side * image.channels));
        resize_image(image.pixels.data(), image.height, image.width, image.channels, resized.pixels.data(), side, side);
        image = std::move(resized);
      }
      images[i] = std::move(image);
    } catch (const Error& e) {
      errors[i] = e.what();
    }
  }

  skipped = 0;
  const DecodedImage* first = nullptr;
  const std::string* first_file = nullptr;
  bool any_colour = false;
  for (int64_t i = 0; i < count; i++) {
    if (!errors[i].empty()) {
      TG_CHECK(options.skip_bad, errors[i] + "; the skip_bad option skips such files");
      skipped++;
      continue;
    }
    any_colour |= images[i].channels == 3;
    if (first == nullptr) {
      first = &images[i], first_file = files[i];
      continue;
    }
    TG_CHECK(images[i].height == first->height && images[i].width == first->width,
             "image file '" + *files[i] + "' is " + size_text(images[i].height, images[i].width) + " but '" +
                 *first_file + "' is " + size_text(first->height, first->width) +
                 "; give image_size to resize every image to one size");
  }
  TG_CHECK(first != nullptr, "image folder '" + listings.front().folder + "': none of its " + std::to_string(count) +
                                 " files decode as an image");

  const int64_t height = first->height, width = first->width;  // `first` is freed below
  std::vector<ImageSet> sets(listings.size());
  int64_t i = 0;
  for (size_t s = 0; s < listings.size(); s++) {
    ImageSet& set = sets[s];
    set.height = height, set.width = width, set.channels = any_colour ? 3 : 1;
    set.pixels.reserve(static_cast<size_t>(set.image_bytes()) * listings[s].files.size());
    for (size_t f = 0; f < listings[s].files.size(); f++, i++) {
      if (!errors[i].empty()) continue;
      if (images[i].channels != set.channels) images[i] = grey_to_rgb(images[i]);
      set.pixels.insert(set.pixels.end(), images[i].pixels.begin(), images[i].pixels.end());
      set.labels.push_back(listings[s].labels[f]);
      images[i] = DecodedImage();  // the bytes now live in the set
    }
  }
  return sets;
}

}  // namespace tg
