// Image files in and out: OpenCV's pixels, one IoError per problem naming the file,
// the size limit checked from the header, and nothing of the codecs on stderr.
#include <attend/io_error.h>
#include <attend/vision/image_io.h>

#include <test_support.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace av = attend::vision;
using attend::testing::contains;
using attend::testing::read_bytes;
using attend::testing::TempDir;
using attend::testing::write_bytes;

namespace {

using Bytes = std::vector<unsigned char>;

/// The IoError `f` throws: its path and message ("(nothing thrown)" when none).
struct Thrown {
  std::string path, what;
};
template <typename F>
Thrown io_error(F&& f) {
  try {
    f();
  } catch (const attend::IoError& e) {
    return {e.path(), e.what()};
  }
  return {"", "(nothing thrown)"};
}

/// A random image of `channels` (1 or 3) 8-bit channels.
cv::Mat noise_image(int rows, int cols, int channels, int seed = 7) {
  cv::Mat m(rows, cols, CV_8UC(channels));
  cv::RNG rng(static_cast<std::uint64_t>(seed));
  rng.fill(m, cv::RNG::UNIFORM, 0, 256);
  return m;
}

std::uint32_t crc32(const unsigned char* p, size_t n) {
  std::uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
  }
  return c ^ 0xFFFFFFFFu;
}

void put_be32(Bytes& b, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>(v >> s));
}

/// A PNG chunk with its length and a correct CRC.
void png_chunk(Bytes& png, const char* type, const Bytes& data) {
  put_be32(png, static_cast<std::uint32_t>(data.size()));
  const auto start = png.size();
  png.insert(png.end(), type, type + 4);
  png.insert(png.end(), data.begin(), data.end());
  put_be32(png, crc32(png.data() + start, png.size() - start));
}

/// A well-formed PNG (every CRC right) of an 8-bit grey `width` x `height` image whose
/// IDAT chunk holds `idat` (not necessarily enough, or valid, zlib data).
Bytes grey_png(std::uint32_t width, std::uint32_t height, const Bytes& idat) {
  Bytes png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  Bytes ihdr;
  put_be32(ihdr, width);
  put_be32(ihdr, height);
  ihdr.insert(ihdr.end(), {8, 0, 0, 0, 0});  // 8 bits, grey, deflate, filter 0, not interlaced
  png_chunk(png, "IHDR", ihdr);
  png_chunk(png, "IDAT", idat);
  png_chunk(png, "IEND", {});
  return png;
}

Bytes encode(const std::string& extension, const cv::Mat& image) {
  Bytes bytes;
  EXPECT_TRUE(cv::imencode(extension, image, bytes)) << extension;
  return bytes;
}

}  // namespace

// ------------------------------------------------------------------ good files

struct FormatCase {
  const char* extension;
  int channels;
  bool lossless;
};

class ImageFormats : public ::testing::TestWithParam<FormatCase> {};

TEST_P(ImageFormats, RoundTripGivesOpenCvsPixels) {
  const auto c = GetParam();
  TempDir dir;
  const auto image = noise_image(23, 37, c.channels);
  const auto path = dir.file(std::string("sub/x") + c.extension);
  av::write_image(path, image);
  // The same bytes OpenCV writes, and the same pixels it reads, in colour and grey.
  EXPECT_EQ(read_bytes(path), encode(c.extension, image));
  for (const bool grey : {false, true}) {
    const auto mine = av::read_image(path, grey);
    const auto theirs = cv::imread(path, grey ? cv::IMREAD_GRAYSCALE : cv::IMREAD_COLOR);
    ASSERT_EQ(mine.type(), grey ? CV_8UC1 : CV_8UC3);
    ASSERT_EQ(mine.size(), theirs.size());
    EXPECT_EQ(cv::norm(mine, theirs, cv::NORM_INF), 0.0) << (grey ? "grey" : "colour");
  }
  const auto stored = av::read_image_as_stored(path);
  ASSERT_EQ(stored.type(), image.type());
  if (c.lossless) {
    EXPECT_EQ(cv::norm(stored, image, cv::NORM_INF), 0.0);
  } else {
    EXPECT_GT(cv::PSNR(stored, image), 10.0);  // noise compresses badly; this is about the pipeline
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, ImageFormats,
                         ::testing::Values(FormatCase{".png", 3, true}, FormatCase{".png", 1, true},
                                           FormatCase{".jpg", 3, false}, FormatCase{".bmp", 3, true},
                                           FormatCase{".ppm", 3, true}, FormatCase{".pgm", 1, true},
                                           FormatCase{".tif", 3, true}, FormatCase{".webp", 3, true}),
                         [](const ::testing::TestParamInfo<FormatCase>& info) {
                           return std::string(info.param.extension + 1) + std::to_string(info.param.channels);
                         });

TEST(ImageIo, ReadsAsStoredWithSixteenBitsAndAlpha) {
  TempDir dir;
  cv::Mat deep(5, 7, CV_16UC1);
  cv::randu(deep, 0, 65535);
  ASSERT_TRUE(cv::imwrite(dir.file("deep.png"), deep));
  const auto read = av::read_image_as_stored(dir.file("deep.png"));
  ASSERT_EQ(read.type(), CV_16UC1);
  EXPECT_EQ(cv::norm(read, deep, cv::NORM_INF), 0.0);
  cv::Mat bgra(4, 6, CV_8UC4, cv::Scalar(10, 20, 30, 40));
  ASSERT_TRUE(cv::imwrite(dir.file("alpha.png"), bgra));
  EXPECT_EQ(av::read_image_as_stored(dir.file("alpha.png")).type(), CV_8UC4);
  EXPECT_EQ(av::read_image(dir.file("alpha.png")).type(), CV_8UC3);
}

// ------------------------------------------------------------------ bad files

TEST(ImageIo, MissingEmptyFolderAndNotAnImageNameTheFile) {
  TempDir dir;
  const auto missing = io_error([&] { av::read_image(dir.file("missing.png")); });
  EXPECT_EQ(missing.path, dir.file("missing.png"));
  EXPECT_TRUE(contains(missing.what, "no such file")) << missing.what;

  write_bytes(dir.file("empty.png"), {});
  const auto empty = io_error([&] { av::read_image(dir.file("empty.png")); });
  EXPECT_EQ(empty.path, dir.file("empty.png"));
  EXPECT_TRUE(contains(empty.what, "empty (0 bytes)")) << empty.what;

  const auto folder = io_error([&] { av::read_image(dir.path().string()); });
  EXPECT_TRUE(contains(folder.what, "is a folder")) << folder.what;

  const std::string text = "attend checkpoint? no, a text file\n";
  write_bytes(dir.file("notes.png"), Bytes(text.begin(), text.end()));
  const auto notes = io_error([&] { av::read_image(dir.file("notes.png")); });
  EXPECT_EQ(notes.path, dir.file("notes.png"));
  EXPECT_TRUE(contains(notes.what, "not a readable image (unknown format")) << notes.what;
}

TEST(ImageIo, TruncatedPngNamesTheChunkWhereItEnds) {
  TempDir dir;
  auto png = encode(".png", noise_image(30, 30, 3));
  png.resize(png.size() / 2);  // inside the IDAT chunk
  write_bytes(dir.file("half.png"), png);
  const auto e = io_error([&] { av::read_image(dir.file("half.png")); });
  EXPECT_EQ(e.path, dir.file("half.png"));
  EXPECT_TRUE(contains(e.what, "truncated PNG: the file ends inside the IDAT chunk at byte")) << e.what;

  png = encode(".png", noise_image(30, 30, 3));
  png.resize(png.size() - 12);  // the IEND chunk is gone
  write_bytes(dir.file("no-end.png"), png);
  const auto end = io_error([&] { av::read_image(dir.file("no-end.png")); });
  EXPECT_TRUE(contains(end.what, "truncated PNG: the file ends after")) << end.what;
  EXPECT_TRUE(contains(end.what, "before the IEND chunk")) << end.what;
}

TEST(ImageIo, FlippedBitInPngDataIsACrcMismatch) {
  TempDir dir;
  auto png = encode(".png", noise_image(30, 30, 3));
  png[png.size() / 2] ^= 0x10;
  write_bytes(dir.file("flipped.png"), png);
  const auto e = io_error([&] { av::read_image(dir.file("flipped.png")); });
  EXPECT_EQ(e.path, dir.file("flipped.png"));
  EXPECT_TRUE(contains(e.what, "corrupt PNG: CRC mismatch in the IDAT chunk")) << e.what;
}

TEST(ImageIo, TruncatedJpegIsRefusedNotPaddedWithGrey) {
  TempDir dir;
  auto jpeg = encode(".jpg", noise_image(40, 40, 3));
  jpeg.resize(jpeg.size() * 2 / 3);
  write_bytes(dir.file("cut.jpg"), jpeg);
  ASSERT_FALSE(cv::imread(dir.file("cut.jpg")).empty()) << "libjpeg itself decodes it, with a warning";
  const auto e = io_error([&] { av::read_image(dir.file("cut.jpg")); });
  EXPECT_EQ(e.path, dir.file("cut.jpg"));
  EXPECT_TRUE(contains(e.what, "truncated JPEG")) << e.what;
  EXPECT_TRUE(contains(e.what, "without an end-of-image marker")) << e.what;
}

TEST(ImageIo, TruncatedBmpAndPpmSayHowManyBytesThePixelsNeed) {
  TempDir dir;
  for (const char* extension : {".bmp", ".ppm"}) {
    auto bytes = encode(extension, noise_image(20, 20, 3));
    bytes.resize(bytes.size() - 100);
    const auto path = dir.file(std::string("cut") + extension);
    write_bytes(path, bytes);
    const auto e = io_error([&] { av::read_image(path); });
    EXPECT_EQ(e.path, path);
    EXPECT_TRUE(contains(e.what, "truncated")) << e.what;
    EXPECT_TRUE(contains(e.what, "its pixels need")) << e.what;
  }
}

// The size limit comes from the header, before any pixel is decoded: each file below
// is a small image whose header was rewritten to claim a huge one.
struct HugeCase {
  const char* name;
  std::uint32_t width, height;
  const char* limit;  // how the message states the limit that was broken
};

class ImageSizeLimit : public ::testing::TestWithParam<HugeCase> {};

namespace {

/// `bytes` of a small image in the format of `name` with its header claiming w x h.
Bytes claim_size(const std::string& name, std::uint32_t w, std::uint32_t h) {
  const auto image = noise_image(8, 8, 3);
  auto le = [](Bytes& b, size_t at, std::uint32_t v, int n) {
    for (int i = 0; i < n; ++i) b[at + static_cast<size_t>(i)] = static_cast<unsigned char>(v >> (8 * i));
  };
  auto be = [](Bytes& b, size_t at, std::uint32_t v, int n) {
    for (int i = 0; i < n; ++i) b[at + static_cast<size_t>(n - 1 - i)] = static_cast<unsigned char>(v >> (8 * i));
  };
  if (name == "png") return grey_png(w, h, {0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01});
  if (name == "bmp") {
    auto b = encode(".bmp", image);
    le(b, 18, w, 4);
    le(b, 22, h, 4);
    return b;
  }
  if (name == "ppm") {
    const auto text = "P6\n" + std::to_string(w) + " " + std::to_string(h) + "\n255\n";
    Bytes b(text.begin(), text.end());
    b.resize(b.size() + 192, 0x80);
    return b;
  }
  if (name == "jpeg") {
    auto b = encode(".jpg", image);
    for (size_t i = 2; i + 9 < b.size(); ++i) {
      if (b[i] == 0xFF && b[i + 1] == 0xC0) {  // baseline frame header: FF C0 Lh Ll P Hh Hl Wh Wl
        be(b, i + 5, h, 2);
        be(b, i + 7, w, 2);
        return b;
      }
    }
    ADD_FAILURE() << "no SOF0 in OpenCV's JPEG";
    return b;
  }
  if (name == "tiff") {
    auto b = encode(".tif", image);
    EXPECT_EQ(b[0], 'I') << "little-endian TIFF expected";
    const size_t directory = b[4] | (b[5] << 8) | (b[6] << 16) | (static_cast<size_t>(b[7]) << 24);
    const size_t entries = b[directory] | (b[directory + 1] << 8);
    for (size_t k = 0; k < entries; ++k) {
      const size_t e = directory + 2 + 12 * k;
      const unsigned tag = b[e] | (b[e + 1] << 8), type = b[e + 2] | (b[e + 3] << 8);
      const int n = type == 3 ? 2 : 4;
      if (tag == 256) le(b, e + 8, w, n);
      if (tag == 257) le(b, e + 8, h, n);
    }
    return b;
  }
  ADD_FAILURE() << "unknown format " << name;
  return {};
}

}  // namespace

TEST_P(ImageSizeLimit, HeaderClaimingAHugeImageIsRefusedBeforeDecoding) {
  const auto c = GetParam();
  TempDir dir;
  const auto path = dir.file(std::string("huge.") + c.name);
  write_bytes(path, claim_size(c.name, c.width, c.height));
  const auto e = io_error([&] { av::read_image(path); });
  EXPECT_EQ(e.path, path);
  const auto size = std::to_string(c.width) + "x" + std::to_string(c.height);
  EXPECT_TRUE(contains(e.what, "image is " + size + ", larger than the limit of " + c.limit)) << e.what;
}

INSTANTIATE_TEST_SUITE_P(
    Formats, ImageSizeLimit,
    ::testing::Values(HugeCase{"png", 60000, 60000, "32768 pixels per side"},
                      HugeCase{"png", 20000, 20000, "268435456 pixels"}, HugeCase{"png", 1, 40000, "32768 pixels per side"},
                      HugeCase{"bmp", 60000, 60000, "32768 pixels per side"},
                      HugeCase{"ppm", 30000, 30000, "268435456 pixels"},
                      HugeCase{"jpeg", 60000, 60000, "32768 pixels per side"},
                      HugeCase{"jpeg", 20000, 20000, "268435456 pixels"},
                      HugeCase{"tiff", 60000, 60000, "32768 pixels per side"}),
    [](const ::testing::TestParamInfo<HugeCase>& info) {
      return std::string(info.param.name) + std::to_string(info.param.width) + "x" + std::to_string(info.param.height);
    });

TEST(ImageSizeLimit, AnImageAtTheLimitIsNotRefusedForItsSize) {
  // 16384 x 16384 is exactly kMaxImagePixels: what fails is the (missing) pixel data.
  TempDir dir;
  write_bytes(dir.file("edge.png"), grey_png(16384, 16384, {0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01}));
  const auto e = io_error([&] { av::read_image(dir.file("edge.png"), true); });
  EXPECT_FALSE(contains(e.what, "larger than the limit")) << e.what;
  EXPECT_TRUE(contains(e.what, "corrupt PNG data")) << e.what;
  EXPECT_EQ(av::kMaxImagePixels, 16384 * 16384);
}

// ------------------------------------------------------------------ stderr

TEST(ImageIo, CodecsPrintNothingOnStderr) {
  TempDir dir;
  // Valid chunks and CRCs around zlib data that is not: libpng says "libpng error:
  // IDAT: invalid stored block lengths" on stderr when OpenCV decodes it.
  Bytes garbage = {0x78, 0x9C};
  for (int i = 200; i < 240; ++i) garbage.push_back(static_cast<unsigned char>(i));
  write_bytes(dir.file("bad-zlib.png"), grey_png(16, 16, garbage));
  // A JPEG whose scan data is damaged but complete: libjpeg decodes it and says
  // "Corrupt JPEG data: ..." on stderr.
  auto jpeg = encode(".jpg", noise_image(40, 40, 3));
  size_t scan = 0;
  for (size_t i = 2; i + 1 < jpeg.size() && scan == 0; ++i) {
    if (jpeg[i] == 0xFF && jpeg[i + 1] == 0xDA) scan = i + 2 + ((jpeg[i + 2] << 8) | jpeg[i + 3]);
  }
  ASSERT_GT(scan, 0u);
  for (size_t k = scan + 20; k < scan + 80; k += 3) {
    // Not next to an 0xFF and never becoming one: no marker is made or broken.
    if (jpeg[k] != 0xFF && jpeg[k] != 0xAA && jpeg[k - 1] != 0xFF && jpeg[k + 1] != 0xFF) jpeg[k] ^= 0x55;
  }
  write_bytes(dir.file("bad-scan.jpg"), jpeg);
  write_bytes(dir.file("plain.txt.png"), {'h', 'i'});

  ::testing::internal::CaptureStderr();
  const auto png = io_error([&] { av::read_image(dir.file("bad-zlib.png")); });
  cv::Mat decoded;
  const auto none = io_error([&] { decoded = av::read_image(dir.file("bad-scan.jpg")); });
  const auto text = io_error([&] { av::read_image(dir.file("plain.txt.png")); });
  const auto write = io_error([&] { av::write_image(dir.file("x.unknownext"), noise_image(4, 4, 3)); });
  std::fputs("stderr is back\n", stderr);
  const auto printed = ::testing::internal::GetCapturedStderr();

  EXPECT_EQ(printed, "stderr is back\n");
  EXPECT_EQ(png.path, dir.file("bad-zlib.png"));
  EXPECT_TRUE(contains(png.what, "corrupt PNG data")) << png.what;
  EXPECT_EQ(none.what, "(nothing thrown)");
  EXPECT_EQ(decoded.size(), cv::Size(40, 40));
  EXPECT_TRUE(contains(text.what, "not a readable image")) << text.what;
  EXPECT_TRUE(contains(write.what, "cannot write an image with the extension '.unknownext'")) << write.what;
}

TEST(ImageIo, DecodesInParallelThreadsAndPutsStderrBack) {
  TempDir dir;
  const auto image = noise_image(64, 64, 3);
  av::write_image(dir.file("good.png"), image);
  Bytes garbage = {0x78, 0x9C, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x11};
  write_bytes(dir.file("bad.png"), grey_png(8, 8, garbage));
  ::testing::internal::CaptureStderr();
  std::vector<int> good(4, 0), bad(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        try {
          if (cv::norm(av::read_image(dir.file("good.png")), image, cv::NORM_INF) == 0.0) ++good[t];
          av::read_image(dir.file("bad.png"));
        } catch (const attend::IoError&) {
          ++bad[t];
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  std::fputs("after\n", stderr);
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "after\n");
  for (int t = 0; t < 4; ++t) {
    EXPECT_EQ(good[t], 25);
    EXPECT_EQ(bad[t], 25);
  }
}

// ------------------------------------------------------------------ writing

TEST(ImageIo, WriteErrorsNameTheFileAndTheReason) {
  TempDir dir;
  const auto image = noise_image(4, 4, 3);
  write_bytes(dir.file("plainfile"), {'x'});
  const auto under_file = io_error([&] { av::write_image(dir.file("plainfile/y.png"), image); });
  EXPECT_EQ(under_file.path, dir.file("plainfile/y.png"));
  EXPECT_TRUE(contains(under_file.what, "cannot create folder")) << under_file.what;
  const auto no_extension = io_error([&] { av::write_image(dir.file("noext"), image); });
  EXPECT_TRUE(contains(no_extension.what, "cannot write an image with the extension ''")) << no_extension.what;
  const auto wrong_type = io_error([&] { av::write_image(dir.file("f.png"), cv::Mat(3, 3, CV_32FC1)); });
  EXPECT_TRUE(contains(wrong_type.what, "CV_8UC1 or CV_8UC3")) << wrong_type.what;
  EXPECT_FALSE(std::filesystem::exists(dir.file("f.png")));
}
