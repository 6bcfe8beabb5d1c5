#include "attend/vision/image_io.h"

#include <attend/io_error.h>

#include <opencv2/imgcodecs.hpp>

#include <filesystem>

namespace attend::vision {

namespace fs = std::filesystem;

cv::Mat read_image(const std::string& path, bool grey) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw IoError(path, "no such file");
  if (fs::is_directory(path, ec)) throw IoError(path, "is a folder, expected an image file");
  cv::Mat image = cv::imread(path, grey ? cv::IMREAD_GRAYSCALE : cv::IMREAD_COLOR);
  if (image.empty()) throw IoError(path, "not a readable image (unknown format or corrupt data)");
  return image;
}

void write_image(const std::string& path, const cv::Mat& image) {
  if (image.empty()) throw IoError(path, "refusing to write an empty image");
  if (image.depth() != CV_8U || (image.channels() != 1 && image.channels() != 3)) {
    throw IoError(path, "can only write CV_8UC1 or CV_8UC3 images");
  }
  const fs::path target(path);
  std::error_code ec;
  if (target.has_parent_path()) fs::create_directories(target.parent_path(), ec);
  // Keep the extension last so OpenCV still picks the format from it.
  const fs::path tmp = target.parent_path() / (".tmp-" + target.filename().string());
  bool ok = false;
  try {
    ok = cv::imwrite(tmp.string(), image);
  } catch (const cv::Exception& e) {
    fs::remove(tmp, ec);
    throw IoError(path, std::string("cannot encode image: ") + e.err);
  }
  if (!ok) {
    fs::remove(tmp, ec);
    throw IoError(path, "cannot write image (unknown extension or unwritable folder)");
  }
  fs::rename(tmp, target, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw IoError(path, "cannot rename the temporary file into place: " + ec.message());
  }
}

}  // namespace attend::vision
