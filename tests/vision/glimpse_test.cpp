#include <attend/vision/glimpse.h>
#include <attend/vision/trace.h>

#include <glimpse_reference.h>
#include <test_support.h>

#include <torch/torch.h>

#include <gtest/gtest.h>

namespace av = attend::vision;

struct RetinaCase {
  std::int64_t channels, height, width, size, scales;
  double ratio;
  int upsample;  ///< locations on a 1/upsample pixel grid
  const char* name;
};

class RetinaVsReference : public ::testing::TestWithParam<RetinaCase> {};

TEST_P(RetinaVsReference, MatchesRoiPlusInterAreaPerSample) {
  const auto c = GetParam();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  const auto images = torch::rand({5, c.channels, c.height, c.width}, gen);
  const auto o = av::RetinaOptions().size(c.size).scales(c.scales).ratio(c.ratio);
  // Centres on a 1/upsample grid, some near or beyond the borders and corners.
  const auto u = c.upsample;
  std::vector<std::pair<double, double>> centres{{0.0, 0.0},
                                                 {static_cast<double>(c.width), static_cast<double>(c.height)},
                                                 {c.width / 2.0, c.height / 2.0},
                                                 {3.0 + 1.0 / u, c.height - 2.0 - 1.0 / u},
                                                 {-2.0, static_cast<double>(c.height / 3)}};
  if (u == 1) centres[3] = {3.0, c.height - 2.0};
  // Centres on the 1/u grid; with side/2 a multiple of 1/u every corner is too.
  for (auto& p : centres) p = {std::round(p.first * u) / u, std::round(p.second * u) / u};
  auto locations = torch::zeros({5, 2}, torch::kFloat64);
  for (size_t i = 0; i < centres.size(); ++i) {
    locations[static_cast<std::int64_t>(i)][0] = centres[i].first / c.width * 2.0 - 1.0;
    locations[static_cast<std::int64_t>(i)][1] = centres[i].second / c.height * 2.0 - 1.0;
  }
  const auto fast = av::extract_glimpses(images, locations.to(torch::kFloat32), o);
  const auto slow = attend::testing::reference_glimpses(images, locations, o, u);
  ASSERT_EQ(fast.sizes(), (std::vector<std::int64_t>{5, c.scales, c.channels, c.size, c.size}));
  EXPECT_TRUE(torch::allclose(fast, slow, 1e-4, 1e-5)) << (fast - slow).abs().max().item<float>();
  // The differentiable path (images that need gradients) gives the same values.
  const auto dense = av::extract_glimpses(images.clone().requires_grad_(true), locations.to(torch::kFloat32), o);
  EXPECT_TRUE(dense.requires_grad());
  EXPECT_TRUE(torch::allclose(dense.detach(), slow, 1e-4, 1e-5)) << (dense - slow).abs().max().item<float>();
}

INSTANTIATE_TEST_SUITE_P(
    Geometries, RetinaVsReference,
    ::testing::Values(RetinaCase{1, 28, 28, 8, 1, 2.0, 1, "Mnist28OneScale"},
                      RetinaCase{1, 60, 60, 12, 3, 2.0, 1, "Cluttered60ThreeScales"},
                      RetinaCase{1, 60, 60, 12, 3, 2.0, 4, "Cluttered60SubPixel"},
                      RetinaCase{3, 40, 64, 8, 3, 1.5, 4, "RgbNonSquareRatio1p5SubPixel"},
                      RetinaCase{1, 100, 100, 12, 4, 2.0, 2, "Cluttered100FourScales"},
                      RetinaCase{3, 17, 23, 6, 2, 2.5, 4, "OddSizesRatio2p5"}),
    [](const ::testing::TestParamInfo<RetinaCase>& info) { return std::string(info.param.name); });

// Glimpses are split across threads by (item, scale); the count must not show in
// either the direct path or the differentiable one's area weights.
TEST(Retina, GlimpsesDoNotDependOnTheThreadCount) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
  const auto images = torch::rand({48, 1, 60, 60}, gen);
  const auto locations = torch::rand({48, 2}, gen) * 2.4 - 1.2;
  const auto o = av::RetinaOptions().size(12).scales(3).ratio(2.0);
  for (const bool dense : {false, true}) {
    auto run = [&] {
      return av::extract_glimpses(dense ? images.clone().requires_grad_(true) : images, locations, o).detach();
    };
    const auto one = attend::testing::with_threads(1, run), two = attend::testing::with_threads(2, run);
    EXPECT_TRUE(torch::equal(one, two)) << (dense ? "differentiable" : "direct") << " path";
  }
}

TEST(Retina, UniformImageGivesItsValueInsideAndLessAtTheBorder) {
  const auto images = torch::full({1, 1, 20, 20}, 0.5);
  const auto o = av::RetinaOptions().size(4).scales(2).ratio(2.0);
  const auto centre = av::extract_glimpses(images, torch::zeros({1, 2}), o);
  EXPECT_TRUE(torch::allclose(centre, torch::full_like(centre, 0.5)));
  const auto corner = av::extract_glimpses(images, torch::full({1, 2}, -1.0), o);
  // Patch centred on the top-left corner: the top-left quarter lies outside (zeros).
  EXPECT_FLOAT_EQ(corner[0][0][0][0][0].item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(corner[0][0][0][3][3].item<float>(), 0.5f);
}

TEST(Retina, GradientsFlowToTheImageOnly) {
  auto images = torch::rand({2, 1, 16, 16}, torch::requires_grad(true));
  auto locations = torch::zeros({2, 2}, torch::requires_grad(true));
  av::extract_glimpses(images, locations, av::RetinaOptions().size(4).scales(2)).sum().backward();
  ASSERT_TRUE(images.grad().defined());
  EXPECT_GT(images.grad().abs().sum().item<float>(), 0.0f);
  EXPECT_FALSE(locations.grad().defined());
}

TEST(Retina, RejectsNonsense) {
  const auto images = torch::rand({2, 1, 16, 16});
  EXPECT_THROW(av::extract_glimpses(images, torch::zeros({2, 2}), av::RetinaOptions().size(0)), c10::Error);
  EXPECT_THROW(av::extract_glimpses(images, torch::zeros({2, 2}), av::RetinaOptions().scales(0)), c10::Error);
  EXPECT_THROW(av::extract_glimpses(images, torch::zeros({2, 2}), av::RetinaOptions().ratio(0)), c10::Error);
  EXPECT_THROW(av::extract_glimpses(images, torch::zeros({3, 2}), av::RetinaOptions()), c10::Error);
  EXPECT_THROW(av::extract_glimpses(images[0], torch::zeros({2, 2}), av::RetinaOptions()), c10::Error);
  EXPECT_THROW(av::extract_glimpses(images, torch::zeros({2, 2}), av::RetinaOptions().size(12).scales(8)),
               c10::Error);
}

TEST(GlimpseTrace, DrawsBoxesAtTheRetinaGeometryAndAStripPerStep) {
  const auto image = torch::zeros({1, 20, 20});
  const auto o = av::RetinaOptions().size(4).scales(2).ratio(2.0);
  const auto locations = torch::tensor({{0.0f, 0.0f}, {0.5f, -0.5f}});
  const auto glimpses = torch::ones({2, 2, 1, 4, 4});
  const cv::Mat plain = av::draw_glimpse_trace(image, locations, o, {}, "", av::TraceOptions().scale(10));
  const cv::Mat full = av::draw_glimpse_trace(image, locations, o, glimpses, "title",
                                              av::TraceOptions().scale(10).patch_side(20));
  ASSERT_EQ(plain.type(), CV_8UC3);
  EXPECT_GT(full.rows, plain.rows + 2 * 20);  // title + two strip rows
  // The coarse box of step 1 spans pixels 6..14 of the image: its left edge at
  // x = 6 px * 10 + margin 6 is drawn, the image interior at 3 px is not.
  const int margin = 6;
  const auto edge = plain.at<cv::Vec3b>(margin + 100, margin + 60);
  const auto inside = plain.at<cv::Vec3b>(margin + 100, margin + 30);
  EXPECT_GT(edge[0] + edge[1] + edge[2], 100);
  EXPECT_EQ(inside, cv::Vec3b(0, 0, 0));
  // The strip shows the (white) glimpses.
  EXPECT_EQ(full.at<cv::Vec3b>(full.rows - 6 - 10, margin + 28 + 10), cv::Vec3b(255, 255, 255));
}
