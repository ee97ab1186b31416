// Folders of images in the ImageFolder convention: one subfolder per class (its name is the class
// name), holding PNG, JPEG or BMP files, at any depth below it.
//
//   pets/cat/001.png  pets/cat/002.jpg  pets/dog/a.bmp   ->  classes {cat, dog}, labels 0 0 1
//
// Classes are the subfolders sorted by name (bytewise, as torchvision sorts them), files are
// taken in sorted order, and names starting with '.' are ignored (.DS_Store, editor files).
// Every other file in a class folder must decode; `skip_bad` skips and counts those that do not.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/image_set.h"

namespace tg {

struct ImageFolderListing {
  std::string folder;
  std::vector<std::string> class_names;  // sorted
  std::vector<std::string> files;        // sorted by class, then by path
  std::vector<int32_t> labels;           // index into class_names, per file
};

// The classes and files of `folder`. Throws tg::Error naming the folder when it has no class
// subfolders or no files in them, and naming the class folder when one class has no files.
ImageFolderListing list_image_folder(const std::string& folder);

// Relabels `listing` (a test or validation folder) by `class_names` (the training folder's), so
// that the same name gets the same label. Throws when it holds a class the training folder lacks.
void relabel_listing(ImageFolderListing& listing, const std::vector<std::string>& class_names,
                     const std::string& training_folder);

struct FolderDecodeOptions {
  int64_t image_size = 0;  // 0: every image must share the first one's size; else resize to square
  int64_t channels = 0;    // 0: 1 if every image of every listing is grey, else 3
  bool skip_bad = false;   // skip (and count) files that do not decode instead of throwing
};

// Decodes the files of every listing (in parallel) into one set per listing, all with the same
// size and channel count. `skipped` receives the number of files skipped. Throws naming the file
// for one that does not decode (without skip_bad), or whose size differs without image_size.
std::vector<ImageSet> decode_image_folders(const std::vector<ImageFolderListing>& listings,
                                           const FolderDecodeOptions& options, int64_t& skipped);

}  // namespace tg
