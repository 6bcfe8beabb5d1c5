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

// The heatmap is blended over the image: opacity 0 gives the image back (BGR), and a
// map with one hot cell colours that cell's pixels differently from the others (cells
// of H/h x W/w pixels, blocks without smoothing).
TEST(Heatmap, OverlayBlendsTheMapOverTheImage) {
  auto image = torch::zeros({3, 8, 12}, torch::kUInt8);
  image[0].fill_(200);  // red in RGB
  auto map = torch::zeros({2, 3});
  map[1][2] = 1.0;  // bottom right cell: rows 4..7, columns 8..11
  const auto plain = av::overlay_heatmap(image, map, av::OverlayOptions().opacity(0.0));
  ASSERT_EQ(plain.type(), CV_8UC3);
  ASSERT_EQ(plain.rows, 8);
  ASSERT_EQ(plain.cols, 12);
  EXPECT_EQ(plain.at<cv::Vec3b>(0, 0), cv::Vec3b(0, 0, 200));  // BGR
  const auto blended = av::overlay_heatmap(image, map, av::OverlayOptions().opacity(0.5).smooth(false));
  const auto hot = blended.at<cv::Vec3b>(6, 10), cold = blended.at<cv::Vec3b>(1, 1);
  EXPECT_NE(hot, cold);
  EXPECT_EQ(blended.at<cv::Vec3b>(4, 8), hot);    // the whole cell alike
  EXPECT_EQ(blended.at<cv::Vec3b>(3, 11), cold);  // the cell above it is cold
  // The RGB tensor form is the same picture.
  const auto rgb = av::overlay_heatmap_rgb(image, map, av::OverlayOptions().opacity(0.5).smooth(false));
  ASSERT_EQ(rgb.sizes(), (std::vector<std::int64_t>{3, 8, 12}));
  EXPECT_EQ(rgb[0][6][10].item<int>(), hot[2]);
  EXPECT_THROW(av::overlay_heatmap(image, torch::zeros({2}), {}), c10::Error);
  EXPECT_THROW(av::overlay_heatmap(torch::zeros({2, 8, 8}), map, {}), c10::Error);
}
