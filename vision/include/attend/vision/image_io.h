#pragma once
/// Reading and writing image files with errors that name the file.

#include <opencv2/core/mat.hpp>

#include <string>

namespace attend::vision {

/// Reads an image file as 8-bit BGR (or grey with `grey`).
/// throws attend::IoError naming the path when the file is missing or not a
/// decodable image.
cv::Mat read_image(const std::string& path, bool grey = false);

/// Writes `image` (CV_8UC1 or CV_8UC3, BGR) in the format given by the path's
/// extension, through a temporary file renamed into place; creates missing parent
/// folders. throws attend::IoError naming the path on failure.
void write_image(const std::string& path, const cv::Mat& image);

}  // namespace attend::vision
