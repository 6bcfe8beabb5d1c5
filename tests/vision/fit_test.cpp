#include <attend/io_error.h>
#include <attend/vision/fit.h>

#include <test_support.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include <gtest/gtest.h>

namespace av = attend::vision;

// A 20x40 white bar on black, letterboxed to 10x10: shrunk to 10x5 (aspect kept) and
// padded above and below; stretched: every pixel white.
TEST(FitImage, LetterboxKeepsTheAspectRatioAndSaysWhatItDid) {
  cv::Mat wide(20, 40, CV_8UC1, cv::Scalar(255));
  const auto boxed = av::fit_image(wide, av::FitImageOptions().channels(1).height(10).width(10));
  EXPECT_EQ(boxed.note, "resized 40x20 -> 10x5, padded to 10x10");
  ASSERT_EQ(boxed.image.sizes(), (std::vector<std::int64_t>{1, 10, 10}));
  const auto rows = boxed.image[0].mean(1);  // mean of each row
  EXPECT_TRUE(torch::equal(rows.narrow(0, 0, 2), torch::zeros({2})));
  EXPECT_TRUE(torch::allclose(rows.narrow(0, 2, 5), torch::ones({5})));
  EXPECT_TRUE(torch::equal(rows.narrow(0, 7, 3), torch::zeros({3})));

  const auto stretched =
      av::fit_image(wide, av::FitImageOptions().channels(1).height(10).width(10).mode(av::FitMode::kStretch));
  EXPECT_EQ(stretched.note, "resized 40x20 -> 10x10");
  EXPECT_TRUE(torch::allclose(stretched.image, torch::ones({1, 10, 10})));

  // Small images are padded, never enlarged; an exact fit is used as is.
  const auto small = av::fit_image(cv::Mat(4, 6, CV_8UC1, cv::Scalar(255)), av::FitImageOptions().height(10).width(10));
  EXPECT_EQ(small.note, "padded to 10x10");
  EXPECT_FLOAT_EQ(small.image.sum().item<float>(), 24.0f);
  EXPECT_EQ(av::fit_image(cv::Mat(10, 10, CV_8UC1), av::FitImageOptions().height(10).width(10)).note, "used as is");
}

TEST(FitImage, ConvertsChannelsAndInvertsWithRgbTensors) {
  cv::Mat bgr(2, 2, CV_8UC3, cv::Scalar(255, 0, 0));  // pure blue in OpenCV's order
  const auto rgb = av::fit_image(bgr, av::FitImageOptions().channels(3).height(2).width(2));
  EXPECT_TRUE(torch::equal(rgb.image[2], torch::ones({2, 2}))) << "blue is the third RGB channel";
  EXPECT_TRUE(torch::equal(rgb.image[0], torch::zeros({2, 2})));
  const auto grey = av::fit_image(bgr, av::FitImageOptions().channels(1).height(2).width(2).invert(true));
  EXPECT_EQ(grey.note, "converted to grey, inverted");
  // OpenCV's grey of pure blue is round(0.114 * 255) = 29; inverted 226.
  EXPECT_NEAR(grey.image[0][0][0].item<float>(), 226.0f / 255.0f, 1e-6);
  const auto from_grey = av::fit_image(cv::Mat(2, 2, CV_8UC1, cv::Scalar(51)), av::FitImageOptions().channels(3).height(2).width(2));
  EXPECT_EQ(from_grey.note, "grey replicated to 3 channels");
  EXPECT_TRUE(torch::allclose(from_grey.image, torch::full({3, 2, 2}, 0.2f)));
  EXPECT_THROW(av::fit_image(cv::Mat(), av::FitImageOptions()), c10::Error);
  EXPECT_THROW(av::fit_image(cv::Mat(2, 2, CV_32FC1), av::FitImageOptions()), c10::Error);
  EXPECT_THROW(av::fit_image(cv::Mat(2, 2, CV_8UC1), av::FitImageOptions().channels(2)), c10::Error);
}

TEST(FitImage, ReadsFilesAsGreyForOneChannelModels) {
  attend::testing::TempDir dir;
  cv::imwrite(dir.file("a.png"), cv::Mat(12, 6, CV_8UC3, cv::Scalar(255, 255, 255)));
  const auto fitted = av::read_fitted_image(dir.file("a.png"), av::FitImageOptions().height(6).width(6));
  EXPECT_EQ(fitted.note, "read as grey, resized 6x12 -> 3x6, padded to 6x6");
  EXPECT_THROW(av::read_fitted_image(dir.file("none.png"), av::FitImageOptions()), attend::IoError);
}
