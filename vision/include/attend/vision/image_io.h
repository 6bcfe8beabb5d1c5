#pragma once
/// Reading and writing image files with errors that name the file.
///
/// Formats read: PNG, JPEG, BMP, PBM/PGM/PPM/PAM, TIFF and WebP (by their content,
/// not their extension), decoded by OpenCV. Before any pixel is decoded the file's
/// header is read here: its size is checked against kMaxImageSide and
/// kMaxImagePixels, and its structure (PNG: every chunk present and, for critical
/// chunks, its CRC; JPEG: markers up to the image data and an end-of-image marker;
/// BMP and binary PNM: as many bytes as the pixels need), so a truncated file or one
/// whose header lies is reported as such, cheaply. The codecs' own diagnostics
/// (libpng's "libpng error: ...", libjpeg's warnings, OpenCV's log lines) never reach
/// stderr: every problem is one attend::IoError "<path>: <what is wrong>".

#include <opencv2/core/mat.hpp>

#include <cstdint>
#include <string>

namespace attend::vision {

/// The largest side, in pixels, of an image attend decodes.
constexpr std::int64_t kMaxImageSide = 32768;
/// The most pixels an image attend decodes may have: 2^28 (16384 x 16384, 768 MiB as
/// 8-bit BGR). OpenCV's own limit is 2^30, and its error names no file.
constexpr std::int64_t kMaxImagePixels = std::int64_t{1} << 28;

/// Reads an image file as 8-bit BGR (CV_8UC3), or grey (CV_8UC1) with `grey`; colour
/// order and EXIF orientation as cv::imread gives them.
/// requires: the image is at most kMaxImageSide pixels on either side and
///           kMaxImagePixels in all, as its header says (checked before decoding).
/// ensures:  an owning, non-empty Mat.
/// throws attend::IoError naming the path when the file is missing, a folder, empty,
///        unreadable, not an image in a format above ("not a readable image"),
///        truncated or corrupt ("truncated PNG: ...", "corrupt JPEG: ..."), or larger
///        than the limits ("image is 60000x60000, larger than the limit of ...").
cv::Mat read_image(const std::string& path, bool grey = false);

/// Reads an image file as it is stored (cv::IMREAD_UNCHANGED): 8 or 16 bits, 1, 3 or
/// 4 channels (BGR, BGRA), no EXIF rotation. Checks and errors as read_image.
cv::Mat read_image_as_stored(const std::string& path);

/// Writes `image` (CV_8UC1 or CV_8UC3, BGR) in the format given by the path's
/// extension (.png, .jpg/.jpeg, .bmp, .pgm/.ppm, .tif/.tiff, .webp), through a
/// temporary file renamed into place; creates missing parent folders. The image is
/// encoded in memory first, so a full disk or an unwritable folder is reported by the
/// write itself ("write failed: No space left on device"), without OpenCV's noise.
/// throws attend::IoError naming the path on failure.
void write_image(const std::string& path, const cv::Mat& image);

}  // namespace attend::vision
