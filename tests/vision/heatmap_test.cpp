#include <attend/vision/heatmap.h>

#include <torch/torch.h>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <gtest/gtest.h>

namespace av = attend::vision;

TEST(AlignmentHeatmap, ColoursEachCellThroughTheColormapAndLabelsBothAxes) {
  const auto w = torch::tensor({{1.0f, 0.0f, 0.0f}, {0.0f, 0.5f, 0.5f}});
  const auto opts = av::AlignmentOptions().cell(10).colormap(cv::COLORMAP_VIRIDIS);
  const cv::Mat plain = av::draw_alignment(w, {}, {}, opts);
  ASSERT_EQ(plain.size(), cv::Size(30, 20));
  // Reference colours straight from OpenCV's colormap.
  cv::Mat levels = (cv::Mat_<std::uint8_t>(1, 3) << 255, 0, 128), colours;
  cv::applyColorMap(levels, colours, cv::COLORMAP_VIRIDIS);
  EXPECT_EQ(plain.at<cv::Vec3b>(5, 5), colours.at<cv::Vec3b>(0, 0));    // weight 1
  EXPECT_EQ(plain.at<cv::Vec3b>(5, 15), colours.at<cv::Vec3b>(0, 1));   // weight 0
  EXPECT_EQ(plain.at<cv::Vec3b>(15, 25), colours.at<cv::Vec3b>(0, 2));  // weight 0.5
  const cv::Mat labelled = av::draw_alignment(w, {"out1", "out2"}, {"a", "b", "c"}, opts);
  EXPECT_GT(labelled.cols, plain.cols);
  EXPECT_GT(labelled.rows, plain.rows);
  const int left = labelled.cols - 30, top = labelled.rows - 20;
  EXPECT_EQ(labelled.at<cv::Vec3b>(top + 5, left + 5), colours.at<cv::Vec3b>(0, 0));
  cv::Mat label_area = labelled(cv::Rect(0, top, left, 20));
  EXPECT_LT(cv::mean(label_area)[0], 255.0) << "row labels drawn";
  EXPECT_THROW(av::draw_alignment(w, {"only one"}), c10::Error);
  EXPECT_THROW(av::draw_alignment(torch::zeros({3})), c10::Error);
}
