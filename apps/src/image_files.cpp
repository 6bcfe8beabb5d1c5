#include "image_files.h"

#include "cli.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <ostream>

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
    fs::directory_iterator it(arg, ec);
    if (ec) throw IoError(arg, "cannot list the folder: " + ec.message());
    for (const auto& entry : it) {
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

void BadInputs::report(const IoError& e) {
  if (!reported_.insert(e.path()).second) return;
  std::string line = e.what();
  std::replace(line.begin(), line.end(), '\n', ' ');
  err_ << "attend: error: " << line << "\n";
}

int BadInputs::exit_code() const noexcept { return reported_.empty() ? kSuccess : kFailure; }

}  // namespace attend::cli
