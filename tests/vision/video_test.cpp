#include <attend/io_error.h>
#include <attend/vision/video.h>

#include <opencv2/core.hpp>

#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "test_support.h"

namespace av = attend::vision;
namespace fs = std::filesystem;
using attend::testing::contains;
using attend::testing::error_message;
using attend::testing::TempDir;

using attend::testing::thrown_message;

namespace {

// Frame i: a flat BGR colour that changes with i.
cv::Scalar frame_colour(int i) { return cv::Scalar(20 + 15 * i, 200 - 10 * i, 90); }

// Writes 12 frames of 64x48 at 7.5 fps and checks the file appears only on close().
void write_twelve(const std::string& path) {
  av::VideoWriter writer(path, 7.5, cv::Size(64, 48));
  for (int i = 0; i < 12; ++i) writer.write(cv::Mat(48, 64, CV_8UC3, frame_colour(i)));
  EXPECT_EQ(writer.frames_written(), 12);
  EXPECT_TRUE(fs::exists(writer.temp_path()));
  EXPECT_FALSE(fs::exists(path)) << "no file under the final name before close()";
  EXPECT_EQ(fs::path(writer.temp_path()).parent_path(), fs::path(path).parent_path());
  EXPECT_EQ(fs::path(writer.temp_path()).extension(), fs::path(path).extension());
  const auto temp = writer.temp_path();
  writer.close();
  EXPECT_FALSE(writer.is_open());
  EXPECT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(temp)) << "the temporary file is renamed away";
}

void expect_twelve_back(const std::string& path, const std::string& fourcc) {
  av::VideoReader reader(path);
  const auto& info = reader.info();
  EXPECT_EQ(info.width, 64);
  EXPECT_EQ(info.height, 48);
  EXPECT_NEAR(info.fps, 7.5, 1e-6);
  EXPECT_EQ(info.frames, 12);
  EXPECT_EQ(info.fourcc, fourcc);
  int n = 0;
  cv::Mat frame;
  while (reader.read(frame)) {
    ASSERT_EQ(frame.type(), CV_8UC3);
    ASSERT_EQ(frame.size(), cv::Size(64, 48));
    const auto mean = cv::mean(frame), want = frame_colour(n);
    for (int c = 0; c < 3; ++c) EXPECT_NEAR(mean[c], want[c], 6.0) << "frame " << n << " channel " << c;  // lossy
    ++n;
  }
  EXPECT_EQ(n, 12);
  EXPECT_FALSE(reader.read(frame)) << "stays at the end";
}

}  // namespace

TEST(Video, AviMjpgWritesAndReadsBack) {
  TempDir dir;
  const auto path = dir.file("clip.avi");
  write_twelve(path);
  expect_twelve_back(path, "MJPG");
}

TEST(Video, Mp4WritesAndReadsBack) {
  TempDir dir;
  const auto path = dir.file("clip.MP4");  // extensions are case-insensitive
  write_twelve(path);
  expect_twelve_back(path, "mp4v");
}

TEST(Video, ReadBatchReturnsUpToNIndependentFrames) {
  TempDir dir;
  const auto path = dir.file("batch.avi");
  write_twelve(path);
  av::VideoReader reader(path);
  const auto first = reader.read_batch(5);
  ASSERT_EQ(first.size(), 5u);
  EXPECT_NE(first[0].data, first[1].data);
  EXPECT_NEAR(cv::mean(first[0])[0], frame_colour(0)[0], 6.0);
  EXPECT_NEAR(cv::mean(first[4])[0], frame_colour(4)[0], 6.0);
  EXPECT_EQ(reader.read_batch(5).size(), 5u);
  EXPECT_EQ(reader.read_batch(5).size(), 2u);
  EXPECT_TRUE(reader.read_batch(5).empty());
  EXPECT_THROW(reader.read_batch(0), c10::Error);
}

TEST(Video, AFrameOfTheWrongSizeThrowsNamingBothSizes) {
  TempDir dir;
  av::VideoWriter writer(dir.file("size.avi"), 10, cv::Size(64, 48));
  const auto message = error_message([&] { writer.write(cv::Mat(32, 40, CV_8UC3, cv::Scalar::all(0))); });
  EXPECT_TRUE(contains(message, "64x48")) << message;
  EXPECT_TRUE(contains(message, "40x32")) << message;
  EXPECT_EQ(writer.frames_written(), 0);
  EXPECT_THROW(writer.write(cv::Mat(48, 64, CV_32FC3)), c10::Error);
}

TEST(Video, DestroyingAnOpenWriterClosesIt) {
  TempDir dir;
  const auto path = dir.file("scoped.avi");
  std::string temp;
  {
    av::VideoWriter writer(path, 5, cv::Size(32, 32));
    temp = writer.temp_path();
    for (int i = 0; i < 3; ++i) writer.write(cv::Mat(32, 32, CV_8UC1, cv::Scalar(100)));  // grey is accepted
  }
  EXPECT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(temp));
  av::VideoReader reader(path);
  EXPECT_EQ(reader.read_batch(10).size(), 3u);
}

TEST(Video, CorruptOrMissingFilesThrowIoErrorNamingThePath) {
  TempDir dir;
  const auto corrupt = dir.file("noise.avi");
  std::mt19937 rng(5);
  std::vector<unsigned char> noise(20000);
  for (auto& b : noise) b = static_cast<unsigned char>(rng() & 0xff);
  attend::testing::write_bytes(corrupt, noise);
  auto message = thrown_message<attend::IoError>([&] { av::VideoReader reader(corrupt); });
  EXPECT_TRUE(contains(message, corrupt)) << message;
  message = thrown_message<attend::IoError>([&] { av::VideoReader reader(dir.file("absent.avi")); });
  EXPECT_TRUE(contains(message, "absent.avi") && contains(message, "no such file")) << message;
}

TEST(Video, WriterAcceptsAviAndMp4Only) {
  TempDir dir;
  const auto path = dir.file("clip.mkv");
  const auto message = thrown_message<attend::IoError>([&] { av::VideoWriter writer(path, 10, cv::Size(16, 16)); });
  EXPECT_TRUE(contains(message, path) && contains(message, ".avi") && contains(message, ".mp4")) << message;
  EXPECT_THROW(av::VideoWriter(dir.file("a.avi"), 0, cv::Size(16, 16)), c10::Error);
  EXPECT_THROW(av::VideoWriter(dir.file("a.avi"), 10, cv::Size(16, 16), "MJPEG"), c10::Error);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 0) << "nothing left behind";
}

TEST(Video, IsVideoFileLooksAtTheExtension) {
  for (const char* yes : {"a.avi", "b.MP4", "c.mkv", "d.mov", "e.webm", "f.m4v", "g.mpg", "h.MPEG", "i.wmv", "/x/y.z.avi"}) {
    EXPECT_TRUE(av::is_video_file(yes)) << yes;
  }
  for (const char* no : {"a.png", "avi", "a.avi.txt", "", "folder/"}) EXPECT_FALSE(av::is_video_file(no)) << no;
}
