#pragma once
/// Image files named on the command line: a folder stands for the image files in it.

#include <string>
#include <vector>

namespace attend::cli {

/// `args` with each folder replaced by its image files (png, jpg, jpeg, bmp, pgm, ppm,
/// tif, tiff; sorted). throws attend::IoError naming a folder without image files.
std::vector<std::string> image_files(const std::vector<std::string>& args);

}  // namespace attend::cli
