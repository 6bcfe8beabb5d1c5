#include <attend/datasets/digits.h>
#include <attend/datasets/idx.h>
#include <attend/io_error.h>

#include <test_support.h>

#include <torch/torch.h>
#include <zlib.h>

#include <gtest/gtest.h>

namespace ds = attend::datasets;
using attend::testing::read_bytes;
using attend::testing::TempDir;
using attend::testing::write_bytes;

namespace {

torch::Tensor random_bytes(std::vector<std::int64_t> sizes, std::uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return torch::randint(0, 256, sizes, gen, torch::kUInt8);
}

/// Expects read_idx(path) to throw attend::IoError naming `path` and containing `needle`.
void expect_io_error(const std::string& path, const std::string& needle) {
  try {
    ds::read_idx(path);
    ADD_FAILURE() << "read_idx(" << path << ") did not throw";
  } catch (const attend::IoError& e) {
    EXPECT_EQ(e.path(), path);
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "message must be one line";
  }
}

std::vector<unsigned char> header(unsigned char type, std::vector<std::uint32_t> dims) {
  std::vector<unsigned char> h{0, 0, type, static_cast<unsigned char>(dims.size())};
  for (auto d : dims) {
    h.insert(h.end(), {static_cast<unsigned char>(d >> 24), static_cast<unsigned char>(d >> 16),
                       static_cast<unsigned char>(d >> 8), static_cast<unsigned char>(d)});
  }
  return h;
}

void write_gzip(const std::string& path, const std::vector<unsigned char>& bytes) {
  gzFile gz = gzopen(path.c_str(), "wb");
  gzwrite(gz, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(gz);
}

}  // namespace

struct IdxCase {
  std::vector<std::int64_t> sizes;
  bool gzip;
};

class IdxRoundTrip : public ::testing::TestWithParam<IdxCase> {};

TEST_P(IdxRoundTrip, ReadsBackExactlyWhatWasWritten) {
  TempDir dir;
  const auto& c = GetParam();
  const auto path = dir.file(c.gzip ? "data.idx.gz" : "data.idx");
  const auto data = random_bytes(c.sizes, 42);
  ds::write_idx(path, data);
  const auto header = ds::read_idx_header(path);
  EXPECT_EQ(header.dims, c.sizes);
  EXPECT_EQ(header.gzip, c.gzip);
  const auto back = ds::read_idx(path);
  EXPECT_EQ(back.scalar_type(), torch::kUInt8);
  EXPECT_EQ(back.sizes(), data.sizes());
  EXPECT_TRUE(torch::equal(back, data));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

INSTANTIATE_TEST_SUITE_P(Shapes, IdxRoundTrip,
                         ::testing::Values(IdxCase{{7}, false}, IdxCase{{7}, true}, IdxCase{{3, 5}, false},
                                           IdxCase{{4, 28, 28}, false}, IdxCase{{4, 28, 28}, true},
                                           IdxCase{{3, 17, 9}, true}, IdxCase{{2, 6, 5, 3}, false},
                                           IdxCase{{2, 6, 5, 3}, true}, IdxCase{{0, 28, 28}, false}),
                         [](const ::testing::TestParamInfo<IdxCase>& info) {
                           std::string name = "Rank" + std::to_string(info.param.sizes.size());
                           for (auto d : info.param.sizes) name += "x" + std::to_string(d);
                           return name + (info.param.gzip ? "Gzip" : "Plain");
                         });

TEST(IdxFormat, WritesTheStandardHeaderBytes) {
  TempDir dir;
  const auto path = dir.file("small.idx");
  auto data = torch::arange(6, torch::kUInt8).reshape({2, 3});
  ds::write_idx(path, data);
  const std::vector<unsigned char> expected{0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 0, 1, 2, 3, 4, 5};
  EXPECT_EQ(read_bytes(path), expected);
}

TEST(IdxFormat, WritesNonContiguousTensorsInLogicalOrder) {
  TempDir dir;
  const auto path = dir.file("t.idx");
  auto data = torch::arange(6, torch::kUInt8).reshape({2, 3}).t();  // [[0,3],[1,4],[2,5]]
  ds::write_idx(path, data);
  EXPECT_TRUE(torch::equal(ds::read_idx(path), data.contiguous()));
}

TEST(IdxFormat, RejectsTensorsItCannotStore) {
  TempDir dir;
  EXPECT_THROW(ds::write_idx(dir.file("f.idx"), torch::zeros({2, 2})), c10::Error);
  EXPECT_THROW(ds::write_idx(dir.file("r5.idx"), torch::zeros({1, 1, 1, 1, 1}, torch::kUInt8)), c10::Error);
}

TEST(IdxCorruption, MissingFile) { expect_io_error("/nonexistent/attend/x.idx", "no such file"); }

TEST(IdxCorruption, EmptyFile) {
  TempDir dir;
  write_bytes(dir.file("e.idx"), {});
  expect_io_error(dir.file("e.idx"), "empty file");
}

TEST(IdxCorruption, BadMagic) {
  TempDir dir;
  auto bytes = header(8, {2});
  bytes[0] = 0x12;
  bytes.insert(bytes.end(), {1, 2});
  write_bytes(dir.file("m.idx"), bytes);
  expect_io_error(dir.file("m.idx"), "bad magic");
}

TEST(IdxCorruption, UnsupportedType) {
  TempDir dir;
  auto bytes = header(0x0D, {2});
  bytes.insert(bytes.end(), 8, 0);
  write_bytes(dir.file("f.idx"), bytes);
  expect_io_error(dir.file("f.idx"), "unsupported IDX element type 0x0d");
}

TEST(IdxCorruption, RankOutOfRange) {
  TempDir dir;
  write_bytes(dir.file("r0.idx"), {0, 0, 8, 0});
  expect_io_error(dir.file("r0.idx"), "rank 0");
  write_bytes(dir.file("r9.idx"), header(8, {1, 1, 1, 1, 1, 1, 1, 1, 1}));
  expect_io_error(dir.file("r9.idx"), "rank 9");
}

TEST(IdxCorruption, TruncatedHeader) {
  TempDir dir;
  write_bytes(dir.file("h.idx"), {0, 0, 8, 3, 0, 0, 0, 2});
  expect_io_error(dir.file("h.idx"), "truncated header");
}

TEST(IdxCorruption, TruncatedData) {
  TempDir dir;
  auto bytes = header(8, {2, 3});
  bytes.insert(bytes.end(), 5, 7);  // 6 declared
  write_bytes(dir.file("t.idx"), bytes);
  expect_io_error(dir.file("t.idx"), "truncated");
}

TEST(IdxCorruption, DimsThatDisagreeWithTheData) {
  TempDir dir;
  auto bytes = header(8, {2, 3});
  bytes.insert(bytes.end(), 10, 7);  // 6 declared, 10 present
  write_bytes(dir.file("w.idx"), bytes);
  expect_io_error(dir.file("w.idx"), "trailing bytes");
}

TEST(IdxCorruption, HugeDeclaredSizeIsRefusedBeforeAllocating) {
  TempDir dir;
  auto bytes = header(8, {100000, 100000, 100000});
  bytes.insert(bytes.end(), 16, 1);
  write_bytes(dir.file("huge.idx"), bytes);
  expect_io_error(dir.file("huge.idx"), "exceeds the limit");
  write_gzip(dir.file("huge.idx.gz"), bytes);
  expect_io_error(dir.file("huge.idx.gz"), "exceeds the limit");
}

TEST(IdxCorruption, GzipWhoseDataIsShorterThanDeclared) {
  TempDir dir;
  auto bytes = header(8, {1000});
  bytes.insert(bytes.end(), 10, 1);
  write_gzip(dir.file("short.gz"), bytes);
  expect_io_error(dir.file("short.gz"), "truncated or corrupt");
}

// Found by fuzz/fuzz_idx: a zero dim made the declared size 0, while the product of
// the dims before it overflowed int64 (undefined behaviour, then LibTorch's numel check).
TEST(IdxCorruption, ZeroDimDoesNotExemptTheOtherDimsFromTheLimit) {
  TempDir dir;
  write_bytes(dir.file("z.idx"), header(8, {0xff0002, 0x3f0000, 0x1000000, 0}));
  expect_io_error(dir.file("z.idx"), "exceeds the limit");
  write_bytes(dir.file("empty.idx"), header(8, {0, 28, 28}));
  EXPECT_EQ(ds::read_idx(dir.file("empty.idx")).sizes(), torch::IntArrayRef({0, 28, 28}));
}

// Found with fuzz/fuzz_idx: the gzip trailer records the length modulo 2^32 only, so a
// tiny file whose dims declare 2^32 more bytes than it holds passed the check and the
// reader allocated them (16 GiB for a 35-byte file).
TEST(IdxCorruption, GzipTrailerAgreeingModulo2To32IsNotTrusted) {
  TempDir dir;
  write_gzip(dir.file("wrap.gz"), header(8, {131072, 131072}));  // 2^34 bytes; trailer 12
  expect_io_error(dir.file("wrap.gz"), "holds at most");
  auto bytes = header(8, {65536, 65537});  // 2^32 + 65536 bytes; trailer 12 + 65536
  bytes.resize(bytes.size() + 65536, 0);
  write_gzip(dir.file("4g.gz"), bytes);
  expect_io_error(dir.file("4g.gz"), "holds at most");
}

TEST(IdxCorruption, CutGzipStream) {
  TempDir dir;
  const auto path = dir.file("cut.idx.gz");
  ds::write_idx(path, random_bytes({50, 40}, 3));
  auto bytes = read_bytes(path);
  bytes.resize(bytes.size() / 2);
  write_bytes(path, bytes);
  try {
    ds::read_idx(path);
    ADD_FAILURE() << "a cut gzip file was accepted";
  } catch (const attend::IoError& e) {
    EXPECT_EQ(e.path(), path);
  }
}

TEST(IdxSplit, FindsPlainAndGzipNamesAndNamesTheFolderWhenMissing) {
  TempDir dir;
  ds::write_idx(dir.file("train-images-idx3-ubyte.gz"), random_bytes({3, 4, 4}, 1));
  ds::write_idx(dir.file("train-labels-idx1-ubyte"), torch::tensor({1, 2, 3}, torch::kUInt8));
  const auto files = ds::find_split(dir.path().string(), "train");
  EXPECT_EQ(files.images, dir.file("train-images-idx3-ubyte.gz"));
  EXPECT_EQ(files.labels, dir.file("train-labels-idx1-ubyte"));
  auto digits = ds::load_split(dir.path().string(), "train");
  EXPECT_EQ(digits.size(), 3);
  EXPECT_TRUE(torch::equal(digits.labels, torch::tensor({1, 2, 3}, torch::kInt64)));
  try {
    ds::find_split(dir.path().string(), "test");
    ADD_FAILURE() << "missing test split not reported";
  } catch (const attend::IoError& e) {
    EXPECT_EQ(e.path(), dir.path().string());
    EXPECT_NE(std::string(e.what()).find("t10k-images-idx3-ubyte"), std::string::npos);
  }
}

TEST(IdxSplit, LabelCountMustMatchImageCount) {
  TempDir dir;
  ds::write_idx(dir.file("i"), random_bytes({3, 4, 4}, 1));
  ds::write_idx(dir.file("l"), torch::tensor({1, 2}, torch::kUInt8));
  try {
    ds::load_digits(dir.file("i"), dir.file("l"));
    ADD_FAILURE() << "count mismatch accepted";
  } catch (const attend::IoError& e) {
    EXPECT_EQ(e.path(), dir.file("l"));
    EXPECT_NE(std::string(e.what()).find("holds 2 labels"), std::string::npos) << e.what();
  }
}

TEST(DigitsDataset, YieldsFloatImagesInUnitRangeWithTheirLabels) {
  ds::Digits d{torch::tensor({0, 255, 51, 102}, torch::kUInt8).reshape({2, 1, 2}),
               torch::tensor({4, 9}, torch::kInt64)};
  ds::DigitsDataset dataset(d);
  ASSERT_EQ(dataset.size().value(), 2u);
  auto e = dataset.get(1);
  EXPECT_EQ(e.data.sizes(), (std::vector<std::int64_t>{1, 1, 2}));
  EXPECT_FLOAT_EQ(e.data[0][0][0].item<float>(), 0.2f);
  EXPECT_FLOAT_EQ(e.data[0][0][1].item<float>(), 0.4f);
  EXPECT_EQ(e.target.item<std::int64_t>(), 9);
  EXPECT_THROW(dataset.get(2), c10::Error);
}
