#pragma once
/// IDX files (the MNIST format): a 4-byte magic {0, 0, type, rank}, `rank` big-endian
/// uint32 dimensions, then the data in row-major order. attend reads and writes the
/// unsigned-byte type (0x08) of any rank 1..4, plain or gzip-compressed.

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace attend::datasets {

/// Largest data section read_idx accepts (16 GiB); a header declaring more is
/// treated as corrupt rather than allocated.
constexpr std::int64_t kMaxIdxBytes = std::int64_t{1} << 34;

/// What an IDX header declares.
struct IdxHeader {
  std::uint8_t type = 0x08;           ///< element type code (0x08 = unsigned byte)
  std::vector<std::int64_t> dims;     ///< dimensions, outermost first
  bool gzip = false;                  ///< the file is gzip-compressed
  std::int64_t data_bytes() const;    ///< product of dims (bytes for type 0x08)
};

/// Reads only the header of `path` (plain or gzip, detected from the content).
/// throws attend::IoError naming the file for an unreadable file, a bad magic,
/// an unsupported type, rank outside 1..4, or a declared size over kMaxIdxBytes.
IdxHeader read_idx_header(const std::string& path);

/// Reads a whole unsigned-byte IDX file.
/// ensures: an owning, contiguous kUInt8 tensor whose sizes are the declared dims.
/// throws attend::IoError naming the file and the problem: missing or unreadable
/// file, empty file, bad magic, unsupported type or rank, declared size too large,
/// data shorter or longer than declared, corrupt gzip stream.
torch::Tensor read_idx(const std::string& path);

/// Writes `data` (kUInt8, rank 1..4; made contiguous if needed) as IDX. A path
/// ending in ".gz" is gzip-compressed. The file is written through attend::AtomicFile
/// (a temporary file renamed into place), so a failure never leaves a partial file at
/// `path`.
/// throws c10::Error for a tensor of another dtype or rank; attend::IoError when
/// the file cannot be written.
void write_idx(const std::string& path, const torch::Tensor& data);

/// The standard file names of an MNIST-style split inside `dir`: for split "train"
/// `train-images-idx3-ubyte` and `train-labels-idx1-ubyte`, for "test" the `t10k-`
/// pair; each may carry a ".gz" suffix.
struct SplitFiles {
  std::string images;
  std::string labels;
};

/// Finds the image and label files of `split` ("train" or "test") in `dir`.
/// throws attend::IoError naming the folder and the file names it looked for.
SplitFiles find_split(const std::string& dir, const std::string& split);

}  // namespace attend::datasets
