#include <attend/io_error.h>
#include <attend/vision/npy.h>

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "test_support.h"

namespace av = attend::vision;
using attend::testing::contains;
using attend::testing::read_bytes;
using attend::testing::TempDir;
using attend::testing::write_bytes;

using attend::testing::thrown_message;

namespace {

std::string as_string(const std::vector<unsigned char>& bytes, size_t from, size_t n) {
  return std::string(reinterpret_cast<const char*>(bytes.data()) + from, n);
}

// The 10-byte prefix plus header text, as numpy writes them (header text given).
std::vector<unsigned char> npy_prefix(std::string header) {
  const size_t total = 10 + header.size() + 1;
  header += std::string((64 - total % 64) % 64, ' ') + "\n";
  const std::string bytes = std::string("\x93NUMPY\x01\x00", 8) + static_cast<char>(header.size() & 0xff) +
                            static_cast<char>(header.size() >> 8) + header;
  return {bytes.begin(), bytes.end()};
}

template <typename T>
void append_values(std::vector<unsigned char>& bytes, const std::vector<T>& values) {
  const auto* p = reinterpret_cast<const unsigned char*>(values.data());
  bytes.insert(bytes.end(), p, p + values.size() * sizeof(T));
}

}  // namespace

// np.save(path, np.arange(6, dtype=np.float32).reshape(2, 3)) writes exactly this
// (numpy 1.24: the dict, 20 spaces of room for the first axis to grow, padding to 128).
TEST(Npy, HeaderOfA2x3Float32FileIsNumpysByteForByte) {
  TempDir dir;
  const auto path = dir.file("a.npy");
  av::write_npy(path, torch::arange(6, torch::kFloat32).reshape({2, 3}));
  const auto bytes = read_bytes(path);
  ASSERT_EQ(bytes.size(), 128u + 6 * 4);
  std::string expected = std::string("\x93NUMPY\x01\x00", 8) + "v" + std::string(1, '\0') +
                         "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  expected += std::string(127 - expected.size(), ' ') + "\n";
  ASSERT_EQ(expected.size(), 128u);
  EXPECT_EQ(as_string(bytes, 0, 128), expected);
  float values[6];
  std::memcpy(values, bytes.data() + 128, sizeof values);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(values[i], static_cast<float>(i));
}

TEST(Npy, RoundTripsA3dTensorExactly) {
  TempDir dir;
  const auto path = dir.file("t.npy");
  torch::manual_seed(11);
  const auto t = torch::randn({2, 3, 4});
  av::write_npy(path, t);
  const auto back = av::read_npy(path);
  EXPECT_EQ(back.scalar_type(), torch::kFloat32);
  EXPECT_EQ(back.sizes(), t.sizes());
  EXPECT_TRUE(torch::equal(back, t));
  // Doubles and non-contiguous views are written as contiguous float32.
  const auto d = torch::randn({4, 3}, torch::kFloat64).t();
  av::write_npy(path, d);
  const auto back_d = av::read_npy(path);
  EXPECT_EQ(back_d.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(back_d, d.to(torch::kFloat32)));
  // Nothing but the file is left in the folder.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), std::filesystem::directory_iterator()), 1);
}

TEST(Npy, ShapesAreWrittenAsPythonTuples) {
  TempDir dir;
  const auto path = dir.file("s.npy");
  av::write_npy(path, torch::ones({5}));
  EXPECT_TRUE(contains(as_string(read_bytes(path), 10, 118), "'shape': (5,), }")) << as_string(read_bytes(path), 10, 118);
  av::write_npy(path, torch::tensor(2.5f));
  EXPECT_TRUE(contains(as_string(read_bytes(path), 10, 118), "'shape': (), }"));
  EXPECT_EQ(av::read_npy(path).dim(), 0);
  EXPECT_EQ(av::read_npy(path).item<float>(), 2.5f);
}

TEST(Npy, HeaderLengthIsAMultipleOf64) {
  TempDir dir;
  const auto path = dir.file("h.npy");
  const std::vector<std::vector<std::int64_t>> shapes = {
      {}, {5}, {2, 3}, {1, 2, 1, 3, 1, 1, 2, 1, 1, 1, 1, 2}, {0, 1234567}, {1234567890123, 0}};
  for (const auto& shape : shapes) {
    av::write_npy(path, torch::zeros(shape));
    const auto bytes = read_bytes(path);
    ASSERT_GE(bytes.size(), 10u);
    const size_t hlen = bytes[8] | (bytes[9] << 8);
    EXPECT_EQ((10 + hlen) % 64, 0u) << torch::IntArrayRef(shape);
    EXPECT_EQ(bytes[10 + hlen - 1], '\n');
    EXPECT_EQ(av::read_npy(path).sizes(), torch::IntArrayRef(shape));
  }
}

TEST(Npy, ReadsFloat64AndInt64Files) {
  TempDir dir;
  const auto f8 = dir.file("f8.npy"), i8 = dir.file("i8.npy");
  auto bytes = npy_prefix("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }");
  append_values<double>(bytes, {0.5, -1.25, 1e300});
  write_bytes(f8, bytes);
  const auto d = av::read_npy(f8);
  EXPECT_EQ(d.scalar_type(), torch::kFloat64);
  EXPECT_TRUE(torch::equal(d, torch::tensor({0.5, -1.25, 1e300}, torch::kFloat64)));
  bytes = npy_prefix("{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }");
  append_values<std::int64_t>(bytes, {1, -2, 3, 1LL << 40});
  write_bytes(i8, bytes);
  const auto i = av::read_npy(i8);
  EXPECT_EQ(i.scalar_type(), torch::kInt64);
  EXPECT_EQ(i[1][1].item<std::int64_t>(), 1LL << 40);
  EXPECT_EQ(i[0][1].item<std::int64_t>(), -2);
}

TEST(Npy, BadFilesThrowIoErrorNamingTheFile) {
  TempDir dir;
  const auto path = dir.file("cut.npy");
  av::write_npy(path, torch::ones({4, 4}));
  auto bytes = read_bytes(path);
  bytes.resize(bytes.size() - 3);
  write_bytes(path, bytes);
  auto message = thrown_message<attend::IoError>([&] { av::read_npy(path); });
  EXPECT_TRUE(contains(message, path)) << message;
  EXPECT_TRUE(contains(message, "truncated")) << message;

  bytes.resize(50);  // inside the header
  write_bytes(path, bytes);
  EXPECT_TRUE(contains(thrown_message<attend::IoError>([&] { av::read_npy(path); }), path));

  const auto magic = dir.file("magic.npy");
  write_bytes(magic, {'P', 'K', 3, 4, 0, 0, 0, 0, 0, 0, 0, 0});
  message = thrown_message<attend::IoError>([&] { av::read_npy(magic); });
  EXPECT_TRUE(contains(message, magic) && contains(message, "magic")) << message;

  const auto i4 = dir.file("i4.npy");
  bytes = npy_prefix("{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }");
  append_values<std::int32_t>(bytes, {7});
  write_bytes(i4, bytes);
  message = thrown_message<attend::IoError>([&] { av::read_npy(i4); });
  EXPECT_TRUE(contains(message, i4) && contains(message, "'<i4'")) << message;

  const auto fortran = dir.file("fortran.npy");
  bytes = npy_prefix("{'descr': '<f4', 'fortran_order': True, 'shape': (1, 2), }");
  append_values<float>(bytes, {1.0f, 2.0f});
  write_bytes(fortran, bytes);
  EXPECT_TRUE(contains(thrown_message<attend::IoError>([&] { av::read_npy(fortran); }), "Fortran"));

  EXPECT_TRUE(contains(thrown_message<attend::IoError>([&] { av::read_npy(dir.file("missing.npy")); }), "missing.npy"));
}

TEST(Npy, WriteRejectsNonFloatingTensorsAndUnwritablePaths) {
  TempDir dir;
  EXPECT_THROW(av::write_npy(dir.file("i.npy"), torch::ones({2}, torch::kInt64)), c10::Error);
  EXPECT_THROW(av::write_npy(dir.file("u.npy"), torch::Tensor()), c10::Error);
  const auto blocker = dir.file("file");
  write_bytes(blocker, {1});
  const auto path = blocker + "/x.npy";  // its folder is a file
  EXPECT_TRUE(contains(thrown_message<attend::IoError>([&] { av::write_npy(path, torch::ones({2})); }), path));
}
