#include "image_files.h"

#include <attend/io_error.h>

#include <algorithm>
#include <cctype>
#include <filesystem>

namespace attend::cli {

namespace fs = std::filesystem;

std::vector<std::string> image_files(const std::vector<std::string>& args) {
  std::vector<std::string> images;
  for (const auto& arg : args) {
    std::error_code ec;
    if (!fs::is_directory(arg, ec)) {
      images.push_back(arg);
      continue;
    }
    std::vector<std::string> found;
    for (const auto& entry : fs::directory_iterator(arg, ec)) {
      auto ext = entry.path().extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return std::tolower(ch); });
      if (entry.is_regular_file() && (ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" ||
                                      ext == ".pgm" || ext == ".ppm" || ext == ".tif" || ext == ".tiff")) {
        found.push_back(entry.path().string());
      }
    }
    if (found.empty()) throw IoError(arg, "folder holds no image files");
    std::sort(found.begin(), found.end());
    images.insert(images.end(), found.begin(), found.end());
  }
  return images;
}

}  // namespace attend::cli
