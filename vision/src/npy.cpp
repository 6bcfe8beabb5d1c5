#include "attend/vision/npy.h"

#include <attend/atomic_file.h>
#include <attend/io_error.h>

#include <torch/torch.h>

#include <cctype>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#if defined(__BYTE_ORDER__)
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "npy.cpp writes and reads little-endian data as it is");
#endif

namespace attend::vision {

namespace {

namespace fs = std::filesystem;

const std::string kMagic = "\x93NUMPY";

// numpy's format module: headers are aligned to 64 bytes, and np.save leaves room
// for the first axis to grow to 21 digits.
constexpr size_t kAlign = 64;
constexpr size_t kGrowthAxisMaxDigits = 21;

std::string shape_repr(const std::vector<std::int64_t>& shape) {
  if (shape.empty()) return "()";
  if (shape.size() == 1) return "(" + std::to_string(shape[0]) + ",)";
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + ")";
}

// The header after the 10-byte prefix, as numpy 1.24's _write_array_header +
// _wrap_header produce it for version 1.0.
std::string npy_header(const std::vector<std::int64_t>& shape) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape_repr(shape) + ", }";
  if (!shape.empty()) {
    const size_t digits = std::to_string(shape[0]).size();
    if (digits < kGrowthAxisMaxDigits) header += std::string(kGrowthAxisMaxDigits - digits, ' ');
  }
  const size_t hlen = header.size() + 1;  // the '\n'
  const size_t padlen = kAlign - ((kMagic.size() + 2 + 2 + hlen) % kAlign);
  return header + std::string(padlen, ' ') + "\n";
}

// A tiny reader for the Python literal dict of a .npy header.
class HeaderParser {
 public:
  HeaderParser(const std::string& path, const std::string& text) : path_(path), text_(text) {}

  void parse(std::string& descr, bool& fortran_order, std::vector<std::int64_t>& shape) {
    bool have_descr = false, have_order = false, have_shape = false;
    skip_space();
    expect('{');
    for (;;) {
      skip_space();
      if (peek() == '}') break;
      const auto key = string_literal();
      skip_space();
      expect(':');
      skip_space();
      if (key == "descr") {
        descr = string_literal();
        have_descr = true;
      } else if (key == "fortran_order") {
        fortran_order = boolean();
        have_order = true;
      } else if (key == "shape") {
        shape = int_tuple();
        have_shape = true;
      } else {
        fail("unexpected key '" + key + "' in the .npy header");
      }
      skip_space();
      if (peek() == ',') ++pos_;
    }
    if (!have_descr || !have_order || !have_shape) {
      fail("the .npy header lacks one of 'descr', 'fortran_order', 'shape'");
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw IoError(path_, what); }
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  void skip_space() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("malformed .npy header: expected '") + c + "' at byte " + std::to_string(pos_));
    ++pos_;
  }
  std::string string_literal() {
    const char quote = peek();
    if (quote != '\'' && quote != '"') fail("malformed .npy header: expected a string at byte " + std::to_string(pos_));
    const auto end = text_.find(quote, pos_ + 1);
    if (end == std::string::npos) fail("malformed .npy header: unterminated string");
    auto s = text_.substr(pos_ + 1, end - pos_ - 1);
    pos_ = end + 1;
    return s;
  }
  bool boolean() {
    if (text_.compare(pos_, 4, "True") == 0) {
      pos_ += 4;
      return true;
    }
    if (text_.compare(pos_, 5, "False") == 0) {
      pos_ += 5;
      return false;
    }
    fail("malformed .npy header: expected True or False at byte " + std::to_string(pos_));
  }
  std::vector<std::int64_t> int_tuple() {
    std::vector<std::int64_t> dims;
    expect('(');
    for (;;) {
      skip_space();
      if (peek() == ')') break;
      if (!std::isdigit(static_cast<unsigned char>(peek()))) {
        fail("malformed .npy header: expected a dimension at byte " + std::to_string(pos_));
      }
      std::int64_t d = 0;
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        if (d > (std::numeric_limits<std::int64_t>::max() - 9) / 10) fail("a dimension in the .npy header is too large");
        d = d * 10 + (text_[pos_++] - '0');
      }
      if (peek() == 'L') ++pos_;  // Python 2 longs
      dims.push_back(d);
      skip_space();
      if (peek() == ',') {
        ++pos_;
      } else if (peek() != ')') {
        fail("malformed .npy header: expected ',' or ')' at byte " + std::to_string(pos_));
      }
    }
    ++pos_;
    return dims;
  }

  const std::string& path_;
  const std::string& text_;
  size_t pos_ = 0;
};

}  // namespace

void write_npy(const std::string& path, const torch::Tensor& t) {
  TORCH_CHECK(t.defined(), "write_npy: expected a defined floating point tensor, got an undefined tensor");
  TORCH_CHECK(t.is_floating_point(), "write_npy: expected a floating point tensor, got dtype ", t.scalar_type());
  const auto values = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  const auto shape = values.sizes().vec();
  const auto header = npy_header(shape);
  if (header.size() > std::numeric_limits<std::uint16_t>::max()) {
    throw IoError(path, "the .npy 1.0 header for shape " + shape_repr(shape) + " is too long");
  }
  const auto hlen = static_cast<std::uint16_t>(header.size());

  AtomicFile file(path);  // removes the temporary file unless committed
  {
    std::ofstream out(file.temp_path(), std::ios::binary | std::ios::trunc);
    if (!out) throw IoError(path, "cannot create the temporary file " + file.temp_path());
    const char version_and_length[4] = {1, 0, static_cast<char>(hlen & 0xff), static_cast<char>(hlen >> 8)};
    out.write(kMagic.data(), static_cast<std::streamsize>(kMagic.size()));
    out.write(version_and_length, 4);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    out.write(static_cast<const char*>(values.data_ptr()), static_cast<std::streamsize>(values.numel() * 4));
    out.flush();
    if (!out) throw IoError(path, "write failed (disk full or folder not writable?)");
  }
  file.commit();
}

torch::Tensor read_npy(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw IoError(path, "no such file");
  if (fs::is_directory(path, ec)) throw IoError(path, "is a folder, expected a .npy file");
  const auto file_size = fs::file_size(path, ec);
  if (ec) throw IoError(path, "cannot read the file size: " + ec.message());
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(path, "cannot open for reading");

  char prefix[12] = {};
  const auto got = static_cast<size_t>(in.read(prefix, 8).gcount());
  if (got < kMagic.size() || std::string(prefix, kMagic.size()) != kMagic) {
    throw IoError(path, "not a .npy file (bad magic; expected \\x93NUMPY)");
  }
  if (got < 8) throw IoError(path, "truncated .npy file: it ends inside the header");
  const int major = static_cast<unsigned char>(prefix[6]);
  size_t prefix_len = 0, header_len = 0;
  if (major == 1) {
    if (in.read(prefix + 8, 2).gcount() != 2) throw IoError(path, "truncated .npy file: it ends inside the header");
    header_len = static_cast<unsigned char>(prefix[8]) | (static_cast<size_t>(static_cast<unsigned char>(prefix[9])) << 8);
    prefix_len = 10;
  } else if (major == 2 || major == 3) {
    if (in.read(prefix + 8, 4).gcount() != 4) throw IoError(path, "truncated .npy file: it ends inside the header");
    for (int i = 3; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(prefix[8 + i]);
    prefix_len = 12;
  } else {
    throw IoError(path, "unsupported .npy format version " + std::to_string(major) + "." +
                            std::to_string(static_cast<unsigned char>(prefix[7])) + " (expected 1.0, 2.0 or 3.0)");
  }
  if (prefix_len + header_len > file_size) throw IoError(path, "truncated .npy file: it ends inside the header");
  std::string header(header_len, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_len));
  if (static_cast<size_t>(in.gcount()) != header_len) {
    throw IoError(path, "truncated .npy file: it ends inside the header");
  }

  std::string descr;
  bool fortran_order = false;
  std::vector<std::int64_t> shape;
  HeaderParser(path, header).parse(descr, fortran_order, shape);
  torch::Dtype dtype = torch::kFloat32;
  if (descr == "<f8") {
    dtype = torch::kFloat64;
  } else if (descr == "<i8") {
    dtype = torch::kInt64;
  } else if (descr != "<f4") {
    throw IoError(path, "unsupported .npy dtype '" + descr + "' (expected '<f4', '<f8' or '<i8')");
  }
  if (fortran_order) throw IoError(path, "Fortran-order .npy files are not supported (expected C order)");

  size_t expected = dtype == torch::kFloat32 ? 4 : 8;
  for (const auto d : shape) {
    if (d != 0 && expected > std::numeric_limits<size_t>::max() / static_cast<size_t>(d)) {
      throw IoError(path, "the shape " + shape_repr(shape) + " in the .npy header is too large");
    }
    expected *= static_cast<size_t>(d);
  }
  const size_t present = file_size - prefix_len - header_len;
  if (present < expected) {
    throw IoError(path, "truncated .npy file: shape " + shape_repr(shape) + " needs " + std::to_string(expected) +
                            " data bytes, found " + std::to_string(present));
  }
  if (present > expected) {
    throw IoError(path, "the .npy file has " + std::to_string(present) + " data bytes, but its shape " +
                            shape_repr(shape) + " declares " + std::to_string(expected));
  }
  auto t = torch::empty(shape, torch::TensorOptions().dtype(dtype));
  in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(expected));
  if (static_cast<size_t>(in.gcount()) != expected) throw IoError(path, "read failed in the data section");
  return t;
}

}  // namespace attend::vision
