#include "attend/vision/image_io.h"

#include <attend/atomic_file.h>
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
  // The temporary name keeps the extension, so OpenCV still picks the format from it.
  AtomicFile file(path);
  bool ok = false;
  try {
    ok = cv::imwrite(file.temp_path(), image);
  } catch (const cv::Exception& e) {
    throw IoError(path, std::string("cannot encode image: ") + e.err);
  }
  if (!ok) throw IoError(path, "cannot write image (unknown extension or unwritable folder)");
  file.commit();
}

}  // namespace attend::vision
