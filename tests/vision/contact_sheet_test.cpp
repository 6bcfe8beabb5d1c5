#include <attend/io_error.h>
#include <attend/vision/contact_sheet.h>
#include <attend/vision/image_io.h>

#include <test_support.h>

#include <torch/torch.h>

#include <opencv2/core.hpp>

#include <gtest/gtest.h>

namespace av = attend::vision;
using attend::testing::TempDir;

TEST(ContactSheet, PlacesEachScaledTileInItsCell) {
  // 3 grey images of 5x7 (HxW), 2 columns, scale 2, padding 4.
  auto images = torch::zeros({3, 5, 7}, torch::kUInt8);
  images[0].fill_(10);
  images[1].fill_(20);
  images[2].fill_(30);
  images[2][4][6] = 250;  // bottom-right pixel of the third image
  const auto opts = av::ContactSheetOptions().columns(2).scale(2).padding(4).background(0);
  const cv::Mat sheet = av::make_contact_sheet(images, {}, opts);
  ASSERT_EQ(sheet.type(), CV_8UC3);
  EXPECT_EQ(sheet.cols, 4 + 2 * (14 + 4));
  EXPECT_EQ(sheet.rows, 4 + 2 * (10 + 4));
  EXPECT_EQ(sheet.at<cv::Vec3b>(4, 4), cv::Vec3b(10, 10, 10));          // tile 0 top-left
  EXPECT_EQ(sheet.at<cv::Vec3b>(4, 4 + 18), cv::Vec3b(20, 20, 20));     // tile 1
  EXPECT_EQ(sheet.at<cv::Vec3b>(4 + 14, 4), cv::Vec3b(30, 30, 30));     // tile 2, next row
  EXPECT_EQ(sheet.at<cv::Vec3b>(4 + 14 + 9, 4 + 13), cv::Vec3b(250, 250, 250));  // scaled pixel, 2x2 block
  EXPECT_EQ(sheet.at<cv::Vec3b>(4 + 14 + 8, 4 + 12), cv::Vec3b(250, 250, 250));
  EXPECT_EQ(sheet.at<cv::Vec3b>(2, 2), cv::Vec3b(0, 0, 0));             // padding
  EXPECT_EQ(sheet.at<cv::Vec3b>(4 + 14, 4 + 18), cv::Vec3b(0, 0, 0));   // empty 4th cell
}

TEST(ContactSheet, KeepsColourOrderOfRgbTensors) {
  auto images = torch::zeros({1, 3, 2, 2});
  images.index_put_({0, 0}, 1.0);  // pure red in RGB
  const cv::Mat sheet = av::make_contact_sheet(images, {}, av::ContactSheetOptions().scale(1).padding(0));
  EXPECT_EQ(sheet.at<cv::Vec3b>(0, 0), cv::Vec3b(0, 0, 255));  // BGR red
}

TEST(ContactSheet, CaptionsAddARowOfTextUnderEachTile) {
  auto images = torch::zeros({2, 8, 8}, torch::kUInt8);
  const auto opts = av::ContactSheetOptions().columns(2).scale(1).padding(2).background(0);
  const cv::Mat plain = av::make_contact_sheet(images, {}, opts);
  const cv::Mat captioned = av::make_contact_sheet(images, {"7", "3"}, opts);
  EXPECT_GT(captioned.rows, plain.rows);
  EXPECT_EQ(captioned.cols, plain.cols);
  cv::Mat text_area = captioned(cv::Rect(0, 2 + 8, captioned.cols, captioned.rows - 10));
  EXPECT_GT(cv::countNonZero(text_area.reshape(1)), 0) << "caption pixels drawn";
  EXPECT_THROW(av::make_contact_sheet(images, {"only one"}, opts), c10::Error);
  EXPECT_THROW(av::make_contact_sheet(torch::zeros({0, 8, 8}, torch::kUInt8)), c10::Error);
  EXPECT_THROW(av::make_contact_sheet(torch::zeros({2, 2, 8, 8})), c10::Error);
}

// A caption wider than its tile wraps onto more lines (the sheet grows by whole lines),
// and boxes are drawn on the tile's pixels at the image's coordinates times the scale.
TEST(ContactSheet, WrapsLongCaptionsAndDrawsBoxes) {
  const auto images = torch::zeros({2, 16, 16}, torch::kUInt8);
  const auto opts = av::ContactSheetOptions().columns(2).scale(2).padding(4);
  const auto short_sheet = av::make_contact_sheet(images, {"a 3", "a 7"}, opts);
  const auto long_sheet =
      av::make_contact_sheet(images, {"a 3 at the top left and a 7 at the center", "a 7"}, opts);
  EXPECT_EQ(short_sheet.cols, long_sheet.cols) << "wrapping never widens a tile";
  EXPECT_GT(long_sheet.rows, short_sheet.rows);
  const auto boxed = av::make_contact_sheet(images, {}, opts, {{{2, 3, 5, 4, ""}}, {}});
  // Tile 0 starts at (4,4); the box's top-left corner is at (4 + 2*2, 4 + 3*2).
  const auto corner = boxed.at<cv::Vec3b>(4 + 6, 4 + 4);
  EXPECT_GT(corner[0] + corner[1] + corner[2], 200) << "a coloured outline on a black tile";
  EXPECT_EQ(boxed.at<cv::Vec3b>(4 + 8, 4 + 6), cv::Vec3b(0, 0, 0)) << "inside the box stays as it was";
  EXPECT_THROW(av::make_contact_sheet(images, {}, opts, {{}}), c10::Error) << "one box list per image";
}

TEST(ImageIo, PngRoundTripIsLosslessAndErrorsNameTheFile) {
  TempDir dir;
  cv::Mat m(9, 13, CV_8UC3);
  cv::randu(m, 0, 256);
  const auto path = dir.file("sub/folder/x.png");
  av::write_image(path, m);
  EXPECT_EQ(cv::norm(av::read_image(path), m, cv::NORM_INF), 0.0);
  EXPECT_FALSE(std::filesystem::exists(dir.file("sub/folder/.tmp-x.png")));

  auto expect_error = [](auto&& fn, const std::string& path, const std::string& needle) {
    try {
      fn();
      ADD_FAILURE() << "no error for " << path;
    } catch (const attend::IoError& e) {
      EXPECT_EQ(e.path(), path);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error([&] { av::read_image(dir.file("missing.png")); }, dir.file("missing.png"), "no such file");
  attend::testing::write_bytes(dir.file("bad.png"), {'n', 'o', 't', ' ', 'p', 'n', 'g'});
  expect_error([&] { av::read_image(dir.file("bad.png")); }, dir.file("bad.png"), "not a readable image");
  expect_error([&] { av::write_image(dir.file("x.unknownext"), m); }, dir.file("x.unknownext"), "cannot");
  attend::testing::write_bytes(dir.file("plainfile"), {'x'});
  expect_error([&] { av::write_image(dir.file("plainfile/y.png"), m); }, dir.file("plainfile/y.png"), "cannot");
}
