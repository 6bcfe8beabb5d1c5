#include <attend/vision/convert.h>

#include <torch/torch.h>

#include <opencv2/core.hpp>

#include <gtest/gtest.h>

namespace av = attend::vision;

namespace {

cv::Mat random_mat(int rows, int cols, int type, int seed) {
  cv::Mat m(rows, cols, type);
  cv::RNG rng(static_cast<std::uint64_t>(seed));
  if (CV_MAT_DEPTH(type) == CV_8U) {
    rng.fill(m, cv::RNG::UNIFORM, 0, 256);
  } else {
    rng.fill(m, cv::RNG::UNIFORM, 0.0, 1.0);
  }
  return m;
}

/// Slow reference: read pixel (y, x, c) through OpenCV's own accessors.
float pixel(const cv::Mat& m, int y, int x, int c) {
  switch (m.type()) {
    case CV_8UC1: return m.at<std::uint8_t>(y, x);
    case CV_8UC3: return m.at<cv::Vec3b>(y, x)[c];
    case CV_32FC1: return m.at<float>(y, x);
    case CV_32FC3: return m.at<cv::Vec3f>(y, x)[c];
  }
  return -1;
}

}  // namespace

struct ConvertCase {
  int type;
  int rows;
  int cols;
};

class MatToTensorSweep : public ::testing::TestWithParam<ConvertCase> {};

TEST_P(MatToTensorSweep, MatchesPixelByPixelReferenceInBothColourOrders) {
  const auto c = GetParam();
  const cv::Mat m = random_mat(c.rows, c.cols, c.type, 17);
  const int ch = m.channels();
  const float scale = m.depth() == CV_8U ? 1.0f / 255.0f : 1.0f;
  const auto rgb = av::mat_to_tensor(m);  // BGR Mat -> RGB tensor
  const auto bgr = av::mat_to_tensor(m, av::MatToTensorOptions().tensor_order(av::ColorOrder::kBGR));
  ASSERT_EQ(rgb.sizes(), (std::vector<std::int64_t>{ch, c.rows, c.cols}));
  ASSERT_TRUE(rgb.is_contiguous());
  auto a = rgb.accessor<float, 3>();
  auto b = bgr.accessor<float, 3>();
  for (int y = 0; y < c.rows; ++y) {
    for (int x = 0; x < c.cols; ++x) {
      for (int k = 0; k < ch; ++k) {
        ASSERT_FLOAT_EQ(b[k][y][x], pixel(m, y, x, k) * scale);
        ASSERT_FLOAT_EQ(a[k][y][x], pixel(m, y, x, ch == 3 ? 2 - k : k) * scale);
      }
    }
  }
}

class EightBitRoundTrip : public ::testing::TestWithParam<ConvertCase> {};

TEST_P(EightBitRoundTrip, RoundTripsThroughTensorToMat) {
  const auto c = GetParam();
  const cv::Mat m = random_mat(c.rows, c.cols, c.type, 3);
  const cv::Mat back = av::tensor_to_mat(av::mat_to_tensor(m));
  ASSERT_EQ(back.type(), m.type());
  EXPECT_EQ(cv::norm(m, back, cv::NORM_INF), 0.0);
}

std::string case_name(const ::testing::TestParamInfo<ConvertCase>& info) {
  const auto& c = info.param;
  const char* depth = CV_MAT_DEPTH(c.type) == CV_8U ? "U8" : "F32";
  return std::string(depth) + "C" + std::to_string(CV_MAT_CN(c.type)) + "Rows" + std::to_string(c.rows) + "Cols" +
         std::to_string(c.cols);
}

INSTANTIATE_TEST_SUITE_P(TypesAndSizes, MatToTensorSweep,
                         ::testing::Values(ConvertCase{CV_8UC1, 5, 7}, ConvertCase{CV_8UC3, 5, 7},
                                           ConvertCase{CV_32FC1, 3, 9}, ConvertCase{CV_32FC3, 9, 3},
                                           ConvertCase{CV_8UC3, 1, 1}, ConvertCase{CV_8UC1, 64, 48}),
                         case_name);
INSTANTIATE_TEST_SUITE_P(TypesAndSizes, EightBitRoundTrip,
                         ::testing::Values(ConvertCase{CV_8UC1, 5, 7}, ConvertCase{CV_8UC3, 5, 7},
                                           ConvertCase{CV_8UC3, 1, 1}, ConvertCase{CV_8UC1, 64, 48}),
                         case_name);

TEST(MatToTensor, RoundTripsNonContinuousRoiAndOwnsItsMemory) {
  cv::Mat big = random_mat(20, 30, CV_8UC3, 9);
  const cv::Mat roi = big(cv::Rect(3, 2, 11, 7));
  ASSERT_FALSE(roi.isContinuous());
  const cv::Mat copy = roi.clone();
  const auto t = av::mat_to_tensor(roi, av::MatToTensorOptions().to_float(false));
  EXPECT_EQ(t.scalar_type(), torch::kUInt8);
  EXPECT_TRUE(torch::equal(t, av::mat_to_tensor(copy, av::MatToTensorOptions().to_float(false))));
  const auto* p = static_cast<const std::uint8_t*>(t.data_ptr());
  EXPECT_TRUE(p < big.datastart || p >= big.dataend) << "tensor aliases the Mat";
  big.setTo(cv::Scalar::all(0));  // the tensor must not change with the Mat
  EXPECT_EQ(cv::norm(av::tensor_to_mat(t), copy, cv::NORM_INF), 0.0);
}

TEST(MatToTensor, UnitRangeAndExplicitChannelOrder) {
  cv::Mat m(1, 1, CV_8UC3, cv::Scalar(10, 20, 255));  // B, G, R
  const auto t = av::mat_to_tensor(m);
  EXPECT_FLOAT_EQ(t[0][0][0].item<float>(), 1.0f);  // R first
  EXPECT_FLOAT_EQ(t[2][0][0].item<float>(), 10.0f / 255.0f);
  const auto same = av::mat_to_tensor(m, av::MatToTensorOptions().mat_order(av::ColorOrder::kRGB));
  EXPECT_FLOAT_EQ(same[0][0][0].item<float>(), 10.0f / 255.0f);  // Mat said RGB: no swap
}

TEST(MatToTensor, RejectsEmptyAndUnsupportedMats) {
  EXPECT_THROW(av::mat_to_tensor(cv::Mat()), c10::Error);
  EXPECT_THROW(av::mat_to_tensor(cv::Mat(2, 2, CV_16UC1)), c10::Error);
  EXPECT_THROW(av::mat_to_tensor(cv::Mat(2, 2, CV_8UC4)), c10::Error);
  EXPECT_THROW(av::mat_to_tensor(cv::Mat(2, 2, CV_32FC1), av::MatToTensorOptions().to_float(false)), c10::Error);
}

TEST(MatsToTensor, StacksABatchAndNamesTheMismatchedImage) {
  std::vector<cv::Mat> mats{random_mat(4, 6, CV_8UC3, 1), random_mat(4, 6, CV_8UC3, 2)};
  const auto batch = av::mats_to_tensor(mats);
  EXPECT_EQ(batch.sizes(), (std::vector<std::int64_t>{2, 3, 4, 6}));
  EXPECT_TRUE(torch::equal(batch[1], av::mat_to_tensor(mats[1])));
  mats.push_back(random_mat(5, 6, CV_8UC3, 3));
  try {
    av::mats_to_tensor(mats);
    ADD_FAILURE() << "mismatched sizes accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("image 2"), std::string::npos);
  }
}

TEST(TensorToMat, ClampsAndRoundsFloatValues) {
  const auto t = torch::tensor({-1.0f, 0.0f, 0.5f, 0.999f, 2.0f}).reshape({1, 1, 5});
  const cv::Mat m = av::tensor_to_mat(t);
  ASSERT_EQ(m.type(), CV_8UC1);
  EXPECT_EQ(m.at<std::uint8_t>(0, 0), 0);
  EXPECT_EQ(m.at<std::uint8_t>(0, 1), 0);
  EXPECT_EQ(m.at<std::uint8_t>(0, 2), 128);
  EXPECT_EQ(m.at<std::uint8_t>(0, 3), 255);
  EXPECT_EQ(m.at<std::uint8_t>(0, 4), 255);
}

TEST(TensorToMat, AcceptsNonContiguousTensorsAndSwapsToBgr) {
  auto hwc = torch::zeros({2, 3, 3}, torch::kUInt8);
  hwc.index_put_({0, 1}, torch::tensor({200, 100, 50}, torch::kUInt8));  // R, G, B at (y=0, x=1)
  const auto chw = hwc.permute({2, 0, 1});
  ASSERT_FALSE(chw.is_contiguous());
  const cv::Mat m = av::tensor_to_mat(chw);
  ASSERT_EQ(m.type(), CV_8UC3);
  EXPECT_EQ(m.at<cv::Vec3b>(0, 1), cv::Vec3b(50, 100, 200));
  EXPECT_THROW(av::tensor_to_mat(torch::zeros({2, 3, 3})), c10::Error);
}
