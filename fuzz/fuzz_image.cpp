/// Fuzzes image decoding through attend's loader (vision/src/image_io.cpp): what
/// `attend classify`, `saliency` and `segment` do with a user's image file. The
/// loader's own header checks are instrumented; the decoders are the system OpenCV's
/// (PNG, JPEG, TIFF, WebP, BMP, PNM): not instrumented, but their heap is ASan's, so
/// overruns through the C library and huge allocations are still caught, and so is
/// every exception that escapes the loader.
///
/// Each input is written as a file and read by one of the public readers, chosen by
/// its size modulo 3 (a deterministic choice that leaves the decoder's bytes as they
/// are): read_image in colour, read_image in grey, read_image_as_stored.
/// Findings besides the general rule (fuzz_support.h): a decoded image that breaks
/// the contract: empty, not CV_8UC3 (colour) or CV_8UC1 (grey), or as stored not 8 or
/// 16 bits with 1, 3 or 4 channels; larger than kMaxImageSide or kMaxImagePixels.

#include "fuzz_support.h"

#include <attend/vision/image_io.h>

#include <opencv2/core.hpp>

#include <cstdint>
#include <string>

namespace af = attend::fuzz;
namespace av = attend::vision;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const int mode = static_cast<int>(size % 3);
  const char* const names[] = {"read_image (colour)", "read_image (grey)", "read_image_as_stored"};
  const std::string what = names[mode];
  const auto path = af::write_input("input-image", data, size);
  cv::Mat image;
  const bool read = af::accepts(what, [&] {
    image = mode == 2 ? av::read_image_as_stored(path) : av::read_image(path, mode == 1);
  });
  if (!read) return 0;
  bool type_ok = false;
  if (mode == 0) type_ok = image.type() == CV_8UC3;
  if (mode == 1) type_ok = image.type() == CV_8UC1;
  if (mode == 2) {
    type_ok = (image.depth() == CV_8U || image.depth() == CV_16U) &&
              (image.channels() == 1 || image.channels() == 3 || image.channels() == 4);
  }
  if (image.empty() || !type_ok) {
    af::finding(what, "decoded to an empty image or one of type " + cv::typeToString(image.type()));
  }
  if (image.cols > av::kMaxImageSide || image.rows > av::kMaxImageSide ||
      std::int64_t{image.cols} * image.rows > av::kMaxImagePixels) {
    af::finding(what, "decoded an image of " + std::to_string(image.cols) + "x" + std::to_string(image.rows) +
                          " pixels, over the limits");
  }
  return 0;
}
