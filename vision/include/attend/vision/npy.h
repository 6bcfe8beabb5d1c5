#pragma once
/// NumPy .npy files: saliency maps and features handed to Python as `np.load(path)`.

#include <torch/types.h>

#include <string>

namespace attend::vision {

/// Writes `t` as a little-endian float32 ('<f4'), C-order, version 1.0 .npy file,
/// byte for byte as numpy 1.24's np.save writes it: the magic "\x93NUMPY", version
/// 1.0, a little-endian uint16 header length, then the header
/// "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" (1-D: "(5,)",
/// 0-D: "()") padded with spaces and ended by '\n' so that magic + length + header
/// is a multiple of 64 bytes, then the values.
/// requires: t defined and floating point (any dtype, device or strides: it is
///           converted to a contiguous CPU float32 copy when it is not one already).
/// ensures:  `path` holds the whole file or is left as it was: the file is written to a
///           temporary file in the same folder (missing folders are created), synced
///           and renamed into place.
/// throws c10::Error for an undefined or non-floating tensor; attend::IoError naming
///        the path when the file cannot be written (the temporary file is removed).
void write_npy(const std::string& path, const torch::Tensor& t);

/// Reads a C-order .npy file (versions 1.0, 2.0, 3.0) of dtype '<f4', '<f8' or '<i8'.
/// ensures:  an owning CPU tensor of dtype float32, float64 or int64 respectively, of
///           the file's shape.
/// throws attend::IoError naming the path when the file is missing, has a bad magic
///        or header, another dtype, Fortran order, or fewer or more data bytes than
///        its shape declares.
torch::Tensor read_npy(const std::string& path);

}  // namespace attend::vision
