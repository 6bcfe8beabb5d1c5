// Image files in and out. Reading is three steps: the file's bytes are read here (so
// a missing, special or unreadable file is our error, not OpenCV's warning); its
// header is checked here (size limit, structure: the failures users meet, truncation
// and lying headers, are reported precisely and never reach a decoder); then OpenCV
// decodes the bytes in memory (cv::imdecode: the pixels, colour conversions and EXIF
// rotation are exactly cv::imread's) with stderr quietened for the codecs' own
// messages about what the checks cannot see (corrupt compressed data; see
// quiet_stderr.h). Writing encodes in memory and hands the bytes to AtomicFile.
#include "attend/vision/image_io.h"

#include <attend/quiet_stderr.h>

#include <attend/atomic_file.h>
#include <attend/io_error.h>

#include <opencv2/imgcodecs.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <vector>

namespace attend::vision {

namespace {

namespace fs = std::filesystem;

using Bytes = std::vector<unsigned char>;

// ------------------------------------------------------------------ reading the file

/// The formats read_image accepts, told by their first bytes (as OpenCV does).
enum class ImageFormat { kUnknown, kPng, kJpeg, kBmp, kPnm, kTiff, kWebp };

ImageFormat sniff_format(const Bytes& b) {
  auto starts = [&](std::string_view magic) {
    return b.size() >= magic.size() && std::memcmp(b.data(), magic.data(), magic.size()) == 0;
  };
  if (starts("\x89PNG\r\n\x1a\n")) return ImageFormat::kPng;
  if (starts("\xff\xd8\xff")) return ImageFormat::kJpeg;
  if (starts("BM")) return ImageFormat::kBmp;
  if (b.size() >= 3 && b[0] == 'P' && b[1] >= '1' && b[1] <= '7' && std::isspace(b[2])) return ImageFormat::kPnm;
  if (starts(std::string_view("II*\0", 4)) || starts(std::string_view("MM\0*", 4)) ||
      starts(std::string_view("II+\0", 4)) || starts(std::string_view("MM\0+", 4))) {
    return ImageFormat::kTiff;
  }
  if (b.size() >= 12 && starts("RIFF") && std::memcmp(b.data() + 8, "WEBP", 4) == 0) return ImageFormat::kWebp;
  return ImageFormat::kUnknown;
}

/// Reads up to `want` more bytes of `fd` into `bytes` (all of it for want = SIZE_MAX).
void read_more(int fd, Bytes& bytes, size_t want, const std::string& path) {
  size_t done = 0;
  while (done < want) {
    const size_t chunk = std::min<size_t>(want - done, 1 << 20);
    const auto at = bytes.size();
    bytes.resize(at + chunk);
    const ssize_t n = ::read(fd, bytes.data() + at, chunk);
    if (n < 0 && errno == EINTR) {
      bytes.resize(at);
      continue;
    }
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      throw IoError(path, std::string("read failed: ") + std::strerror(err));
    }
    bytes.resize(at + static_cast<size_t>(n));
    if (n == 0) return;
    done += static_cast<size_t>(n);
  }
}

/// The bytes of an image file in one of the formats above, and its format.
/// throws IoError for a missing, special, empty or unreadable file or another format
/// (whose bytes are then not read past the first few).
std::pair<Bytes, ImageFormat> read_image_file(const std::string& path) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (!fs::exists(status)) {
    if (ec && ec != std::errc::no_such_file_or_directory) throw IoError(path, "cannot read: " + ec.message());
    throw IoError(path, "no such file");
  }
  if (fs::is_directory(status)) throw IoError(path, "is a folder, expected an image file");
  if (!fs::is_regular_file(status)) throw IoError(path, "is not a regular file, expected an image file");
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError(path, std::string("cannot open: ") + std::strerror(errno));
  Bytes bytes;
  read_more(fd, bytes, 16, path);
  if (bytes.empty()) {
    ::close(fd);
    throw IoError(path, "is empty (0 bytes), not an image");
  }
  const auto format = sniff_format(bytes);
  if (format == ImageFormat::kUnknown) {
    ::close(fd);
    throw IoError(path, "not a readable image (unknown format; attend reads PNG, JPEG, BMP, PNM, TIFF and WebP)");
  }
  read_more(fd, bytes, SIZE_MAX, path);
  ::close(fd);
  return {std::move(bytes), format};
}

// ---------------------------------------------------------------- checking the header

/// What a header says: the format's name (for messages) and the image's size.
struct ImageHeader {
  std::string format;
  std::uint64_t width = 0, height = 0;
};

std::uint32_t be16(const Bytes& b, size_t at) { return (std::uint32_t{b[at]} << 8) | b[at + 1]; }
std::uint32_t be32(const Bytes& b, size_t at) { return (be16(b, at) << 16) | be16(b, at + 2); }
std::uint32_t le16(const Bytes& b, size_t at) { return std::uint32_t{b[at]} | (std::uint32_t{b[at + 1]} << 8); }
std::uint32_t le32(const Bytes& b, size_t at) { return le16(b, at) | (le16(b, at + 2) << 16); }

std::string hex_byte(unsigned v) {
  static const char* digits = "0123456789ABCDEF";
  return std::string("0x") + digits[(v >> 4) & 15] + digits[v & 15];
}

/// Throws unless width x height is within kMaxImageSide and kMaxImagePixels.
void check_image_size(const std::string& path, std::uint64_t width, std::uint64_t height) {
  const auto size = std::to_string(width) + "x" + std::to_string(height);
  if (width > static_cast<std::uint64_t>(kMaxImageSide) || height > static_cast<std::uint64_t>(kMaxImageSide)) {
    throw IoError(path, "image is " + size + ", larger than the limit of " + std::to_string(kMaxImageSide) +
                            " pixels per side");
  }
  if (width * height > static_cast<std::uint64_t>(kMaxImagePixels)) {
    throw IoError(path, "image is " + size + ", larger than the limit of " + std::to_string(kMaxImagePixels) +
                            " pixels (16384x16384)");
  }
}

/// CRC-32 (ISO-HDLC, as PNG and zlib use it) of `n` bytes at `p`.
std::uint32_t png_crc32(const unsigned char* p, size_t n) {
  static const auto table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  std::uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

// PNG: the IHDR, then every chunk up to IEND present, and the CRC of every critical
// chunk right (libpng treats a bad one in a critical chunk as fatal, in an ancillary
// one as a warning).
ImageHeader check_png(const std::string& path, const Bytes& b) {
  if (b.size() < 33) throw IoError(path, "truncated PNG: the file ends inside its header (" + std::to_string(b.size()) + " bytes)");
  if (be32(b, 8) != 13 || std::memcmp(b.data() + 12, "IHDR", 4) != 0) {
    throw IoError(path, "corrupt PNG: the first chunk is not a 13-byte IHDR");
  }
  const std::uint64_t width = be32(b, 16), height = be32(b, 20);
  if (width == 0 || height == 0 || width > 0x7FFFFFFFu || height > 0x7FFFFFFFu) {
    throw IoError(path, "corrupt PNG header: size " + std::to_string(width) + "x" + std::to_string(height));
  }
  check_image_size(path, width, height);
  const unsigned depth = b[24], colour = b[25];
  const bool depth_ok = (colour == 0 && (depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16)) ||
                        (colour == 3 && (depth == 1 || depth == 2 || depth == 4 || depth == 8)) ||
                        ((colour == 2 || colour == 4 || colour == 6) && (depth == 8 || depth == 16));
  if (!depth_ok) {
    throw IoError(path, "corrupt PNG header: bit depth " + std::to_string(depth) + " with colour type " +
                            std::to_string(colour));
  }
  if (b[26] != 0 || b[27] != 0 || b[28] > 1) {
    throw IoError(path, "corrupt PNG header: unknown compression, filter or interlace method");
  }
  size_t at = 8;
  bool data = false;
  for (;;) {
    if (b.size() - at < 12) {
      throw IoError(path, "truncated PNG: the file ends after " + std::to_string(b.size()) +
                              " bytes, before the IEND chunk");
    }
    const std::uint64_t length = be32(b, at);
    const std::string type(reinterpret_cast<const char*>(b.data() + at + 4), 4);
    if (!std::all_of(type.begin(), type.end(), [](unsigned char c) { return std::isalpha(c); }) ||
        length > 0x7FFFFFFFu) {
      throw IoError(path, "corrupt PNG: no chunk at byte " + std::to_string(at));
    }
    if (b.size() - at - 12 < length) {
      throw IoError(path, "truncated PNG: the file ends inside the " + type + " chunk at byte " + std::to_string(at) +
                              " (" + std::to_string(b.size() - at - 8) + " of its " + std::to_string(length + 4) +
                              " bytes are there)");
    }
    if (std::isupper(static_cast<unsigned char>(type[0])) &&
        png_crc32(b.data() + at + 4, length + 4) != be32(b, at + 8 + length)) {
      throw IoError(path, "corrupt PNG: CRC mismatch in the " + type + " chunk at byte " + std::to_string(at));
    }
    at += 12 + length;
    if (type == "IDAT") data = true;
    if (type == "IEND") break;
  }
  if (!data) throw IoError(path, "corrupt PNG: no IDAT chunk (no image data)");
  return {"PNG", width, height};
}

// JPEG: the marker segments up to the first scan, a frame header (SOF) among them,
// and an end-of-image marker after the scan (libjpeg decodes a truncated file with a
// warning and grey rows where the data stops; attend refuses it).
ImageHeader check_jpeg(const std::string& path, const Bytes& b) {
  const auto truncated = [&](const std::string& where) {
    return IoError(path, "truncated JPEG: the file ends " + where + " (" + std::to_string(b.size()) + " bytes)");
  };
  size_t at = 2;
  std::uint64_t width = 0, height = 0;
  bool frame = false;
  for (;;) {
    if (at >= b.size()) throw truncated("before the image data");
    if (b[at] != 0xFF) throw IoError(path, "corrupt JPEG: no marker at byte " + std::to_string(at));
    while (at < b.size() && b[at] == 0xFF) ++at;  // fill bytes
    if (at >= b.size()) throw truncated("before the image data");
    const unsigned marker = b[at++];
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) continue;  // no length
    if (marker == 0x00 || marker == 0xD8 || marker == 0xD9) {
      throw IoError(path, "corrupt JPEG: marker " + hex_byte(marker) + " at byte " + std::to_string(at - 1) +
                              " before the image data");
    }
    if (b.size() - at < 2) throw truncated("inside the marker segment " + hex_byte(marker));
    const size_t length = be16(b, at);
    if (length < 2) throw IoError(path, "corrupt JPEG: marker segment " + hex_byte(marker) + " of length " + std::to_string(length));
    if (b.size() - at < length) throw truncated("inside the marker segment " + hex_byte(marker) + " at byte " + std::to_string(at - 2));
    const bool sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (sof && !frame) {
      if (length < 8) throw IoError(path, "corrupt JPEG: frame header of " + std::to_string(length) + " bytes");
      height = be16(b, at + 3);
      width = be16(b, at + 5);
      frame = true;
    }
    at += length;
    if (marker == 0xDA) break;  // start of scan: entropy-coded data follows
  }
  if (!frame) throw IoError(path, "corrupt JPEG: no frame header (SOF) before the image data");
  if (width == 0 || height == 0) {
    throw IoError(path, "corrupt JPEG header: size " + std::to_string(width) + "x" + std::to_string(height));
  }
  check_image_size(path, width, height);
  // In entropy-coded data 0xFF is followed by 0x00 or a restart marker, so 0xFF 0xD9
  // after the first scan is the end-of-image marker (data may follow it).
  bool end = false;
  for (size_t i = b.size(); i >= at + 2 && !end; --i) end = b[i - 2] == 0xFF && b[i - 1] == 0xD9;
  if (!end) throw truncated("inside the image data, without an end-of-image marker");
  return {"JPEG", width, height};
}

// BMP: the size, and for uncompressed pixels as many bytes as the rows need.
ImageHeader check_bmp(const std::string& path, const Bytes& b) {
  if (b.size() < 26) throw IoError(path, "truncated BMP: the file ends inside its header (" + std::to_string(b.size()) + " bytes)");
  const std::uint64_t offset = le32(b, 10);
  const std::uint32_t header = le32(b, 14);
  std::int64_t width = 0, height = 0;
  std::uint32_t bits = 0, compression = 0;
  if (header == 12) {  // OS/2 BITMAPCOREHEADER
    width = le16(b, 18);
    height = le16(b, 20);
    bits = le16(b, 24);
  } else if (header >= 16 && header <= 124) {
    if (b.size() < 14u + std::min<std::uint32_t>(header, 20)) throw IoError(path, "truncated BMP: the file ends inside its header");
    width = static_cast<std::int32_t>(le32(b, 18));
    height = static_cast<std::int32_t>(le32(b, 22));
    bits = le16(b, 28);
    compression = header >= 20 ? le32(b, 30) : 0;
  } else {
    throw IoError(path, "corrupt BMP header: an information header of " + std::to_string(header) + " bytes");
  }
  if (width <= 0 || height == 0) {
    throw IoError(path, "corrupt BMP header: size " + std::to_string(width) + "x" + std::to_string(height));
  }
  const auto rows = static_cast<std::uint64_t>(height < 0 ? -height : height);
  check_image_size(path, static_cast<std::uint64_t>(width), rows);
  if (offset >= b.size()) {
    throw IoError(path, "truncated BMP: the pixels start at byte " + std::to_string(offset) + ", the file has " +
                            std::to_string(b.size()) + " bytes");
  }
  if (compression == 0 || compression == 3) {  // BI_RGB, BI_BITFIELDS: plain rows
    if (bits != 1 && bits != 4 && bits != 8 && bits != 16 && bits != 24 && bits != 32) {
      throw IoError(path, "corrupt BMP header: " + std::to_string(bits) + " bits per pixel");
    }
    const std::uint64_t stride = (static_cast<std::uint64_t>(width) * bits + 31) / 32 * 4;  // rows pad to 4 bytes
    const std::uint64_t need = offset + stride * rows;
    if (need > b.size()) {
      throw IoError(path, "truncated BMP: its pixels need " + std::to_string(need) + " bytes, the file has " +
                              std::to_string(b.size()));
    }
  }
  return {"BMP", static_cast<std::uint64_t>(width), rows};
}

// PBM/PGM/PPM (P1-P6) and PAM (P7): the size, and for binary pixels their bytes.
ImageHeader check_pnm(const std::string& path, const Bytes& b) {
  const int kind = b[1] - '0';
  const std::string format = kind == 7 ? "PAM" : kind == 1 || kind == 4 ? "PBM" : kind == 2 || kind == 5 ? "PGM" : "PPM";
  const auto corrupt = [&](const std::string& what) { return IoError(path, "corrupt " + format + " header: " + what); };
  size_t at = 2;
  const auto skip_space = [&] {
    while (at < b.size()) {
      if (b[at] == '#') {
        while (at < b.size() && b[at] != '\n') ++at;
      } else if (std::isspace(b[at])) {
        ++at;
      } else {
        break;
      }
    }
  };
  // A decimal number; values past 2^40 saturate (they fail the limits anyway).
  const auto number = [&](const char* what) {
    skip_space();
    if (at >= b.size() || !std::isdigit(b[at])) throw corrupt(std::string("no ") + what);
    std::uint64_t v = 0;
    for (; at < b.size() && std::isdigit(b[at]); ++at) v = std::min<std::uint64_t>(v * 10 + (b[at] - '0'), 1ull << 40);
    return v;
  };
  std::uint64_t width = 0, height = 0, depth = kind == 3 || kind == 6 ? 3 : 1, maxval = 1;
  if (kind == 7) {
    for (;;) {
      skip_space();
      const size_t start = at;
      while (at < b.size() && !std::isspace(b[at])) ++at;
      const std::string token(reinterpret_cast<const char*>(b.data() + start), at - start);
      if (token.empty()) throw corrupt("no ENDHDR");
      if (token == "ENDHDR") break;
      if (token == "WIDTH") {
        width = number("width");
      } else if (token == "HEIGHT") {
        height = number("height");
      } else if (token == "DEPTH") {
        depth = number("depth");
      } else if (token == "MAXVAL") {
        maxval = number("maximum value");
      } else {
        while (at < b.size() && b[at] != '\n') ++at;  // TUPLTYPE and comments
      }
    }
  } else {
    width = number("width");
    height = number("height");
    if (kind != 1 && kind != 4) maxval = number("maximum value");
  }
  if (width == 0 || height == 0) throw corrupt("size " + std::to_string(width) + "x" + std::to_string(height));
  if (maxval == 0 || maxval > 65535) throw corrupt("maximum value " + std::to_string(maxval));
  if (depth == 0 || depth > 4) throw corrupt("depth " + std::to_string(depth));
  check_image_size(path, width, height);
  if (kind >= 4) {  // binary pixels after one whitespace byte
    const std::uint64_t start = at + 1;
    const std::uint64_t row = kind == 4 ? (width + 7) / 8 : width * depth * (maxval < 256 ? 1 : 2);
    const std::uint64_t need = start + row * height;
    if (need > b.size()) {
      throw IoError(path, "truncated " + format + ": its pixels need " + std::to_string(need) +
                              " bytes, the file has " + std::to_string(b.size()));
    }
  }
  return {format, width, height};
}

// TIFF (classic and BigTIFF): the size in the first image directory.
ImageHeader check_tiff(const std::string& path, const Bytes& b) {
  const bool little = b[0] == 'I';
  const bool big = (little ? b[2] : b[3]) == 43;
  auto u = [&](size_t at, int n) {
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= std::uint64_t{b[at + (little ? i : n - 1 - i)]} << (8 * i);
    return v;
  };
  const auto truncated = [&](const std::string& where) {
    return IoError(path, "truncated TIFF: the file ends " + where + " (" + std::to_string(b.size()) + " bytes)");
  };
  const size_t offset_size = big ? 8 : 4, count_size = big ? 8 : 2, entry_size = big ? 20 : 12;
  const size_t header_size = big ? 16 : 8;
  if (b.size() < header_size) throw truncated("inside its header");
  const std::uint64_t directory = u(big ? 8 : 4, static_cast<int>(offset_size));
  if (directory < header_size || directory > b.size() || b.size() - directory < count_size) {
    throw truncated("before its first image directory (at byte " + std::to_string(directory) + ")");
  }
  const std::uint64_t entries = u(directory, static_cast<int>(count_size));
  if (entries > (b.size() - directory - count_size) / entry_size) throw truncated("inside its first image directory");
  std::uint64_t width = 0, height = 0;
  for (std::uint64_t i = 0; i < entries; ++i) {
    const size_t e = directory + count_size + i * entry_size;
    const auto tag = u(e, 2), type = u(e + 2, 2);
    const size_t value = e + 4 + (big ? 8 : 4);
    const std::uint64_t v = type == 3 ? u(value, 2) : type == 4 ? u(value, 4) : type == 16 && big ? u(value, 8) : 0;
    if (tag == 256) width = v;
    if (tag == 257) height = v;
  }
  if (width == 0 || height == 0) {
    throw IoError(path, "corrupt TIFF: no image width and length in its first directory");
  }
  check_image_size(path, width, height);
  return {"TIFF", width, height};
}

// WebP: the container's length and the size in its first chunk (VP8, VP8L or VP8X).
ImageHeader check_webp(const std::string& path, const Bytes& b) {
  if (b.size() < 30) throw IoError(path, "truncated WebP: the file ends inside its header (" + std::to_string(b.size()) + " bytes)");
  const std::uint64_t riff = le32(b, 4);
  if (riff + 8 > b.size()) {
    throw IoError(path, "truncated WebP: the container needs " + std::to_string(riff + 8) + " bytes, the file has " +
                            std::to_string(b.size()));
  }
  const std::string chunk(reinterpret_cast<const char*>(b.data() + 12), 4);
  std::uint64_t width = 0, height = 0;
  if (chunk == "VP8X") {
    width = 1 + (le32(b, 24) & 0xFFFFFF);
    height = 1 + (le32(b, 26) >> 8);
  } else if (chunk == "VP8L" && b[20] == 0x2F) {
    const auto bits = le32(b, 21);
    width = 1 + (bits & 0x3FFF);
    height = 1 + ((bits >> 14) & 0x3FFF);
  } else if (chunk == "VP8 " && b[23] == 0x9D && b[24] == 0x01 && b[25] == 0x2A) {
    width = le16(b, 26) & 0x3FFF;
    height = le16(b, 28) & 0x3FFF;
  } else {
    throw IoError(path, "corrupt WebP: no VP8, VP8L or VP8X image header");
  }
  if (width == 0 || height == 0) {
    throw IoError(path, "corrupt WebP header: size " + std::to_string(width) + "x" + std::to_string(height));
  }
  check_image_size(path, width, height);
  return {"WebP", width, height};
}

ImageHeader check_image_header(const std::string& path, const Bytes& bytes, ImageFormat format) {
  switch (format) {
    case ImageFormat::kPng: return check_png(path, bytes);
    case ImageFormat::kJpeg: return check_jpeg(path, bytes);
    case ImageFormat::kBmp: return check_bmp(path, bytes);
    case ImageFormat::kPnm: return check_pnm(path, bytes);
    case ImageFormat::kTiff: return check_tiff(path, bytes);
    case ImageFormat::kWebp: return check_webp(path, bytes);
    case ImageFormat::kUnknown: break;
  }
  throw IoError(path, "not a readable image (unknown format)");
}

std::string first_line_of(std::string text) {
  text = text.substr(0, text.find('\n'));
  while (!text.empty() && (text.back() == ' ' || text.back() == '.' || text.back() == '\r')) text.pop_back();
  return text;
}

/// The checked file, decoded by OpenCV with `flags` (cv::ImreadModes).
cv::Mat read_checked_image(const std::string& path, int flags) {
  const auto [bytes, format] = read_image_file(path);
  const auto header = check_image_header(path, bytes, format);
  cv::Mat image;
  try {
    attend::detail::QuietStderr quiet;  // see quiet_stderr.h
    image = cv::imdecode(bytes, flags);
  } catch (const cv::Exception& e) {
    throw IoError(path, "corrupt " + header.format + " data (" + first_line_of(e.err) + ")");
  }
  if (image.empty()) {
    throw IoError(path, "corrupt " + header.format + " data: the decoder could not read the pixels (damaged or cut short)");
  }
  return image;
}

}  // namespace

cv::Mat read_image(const std::string& path, bool grey) {
  return read_checked_image(path, grey ? cv::IMREAD_GRAYSCALE : cv::IMREAD_COLOR);
}

cv::Mat read_image_as_stored(const std::string& path) { return read_checked_image(path, cv::IMREAD_UNCHANGED); }

void write_image(const std::string& path, const cv::Mat& image) {
  if (image.empty()) throw IoError(path, "refusing to write an empty image");
  if (image.depth() != CV_8U || (image.channels() != 1 && image.channels() != 3)) {
    throw IoError(path, "can only write CV_8UC1 or CV_8UC3 images");
  }
  // Encoded in memory, written by AtomicFile: OpenCV never opens the file, so its
  // "can't open file for writing" warnings and libpng's write errors cannot happen,
  // and a full disk or a read-only folder is reported with the system's reason.
  const auto extension = fs::path(path).extension().string();
  if (extension.empty() || !cv::haveImageWriter(path)) {
    throw IoError(path, "cannot write an image with the extension '" + extension +
                            "' (use .png, .jpg, .bmp, .ppm, .tif or .webp)");
  }
  std::vector<unsigned char> bytes;
  bool ok = false;
  try {
    attend::detail::QuietStderr quiet;  // see quiet_stderr.h
    ok = cv::imencode(extension, image, bytes);
  } catch (const cv::Exception& e) {
    throw IoError(path, "cannot encode image: " + first_line_of(e.err));
  }
  if (!ok || bytes.empty()) throw IoError(path, "cannot encode image as " + extension);
  AtomicFile file(path);
  file.write(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  file.commit();
}

}  // namespace attend::vision
