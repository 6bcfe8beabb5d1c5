#include <attend/vision/saliency_render.h>
#include <attend/vision/segmentation_render.h>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <gtest/gtest.h>

#include "test_support.h"

namespace av = attend::vision;
using attend::testing::contains;
using attend::testing::error_message;

namespace {

// The colormap's colour (BGR) at one level, straight from OpenCV.
cv::Vec3b colour_at(int colormap, int level) {
  cv::Mat l(1, 1, CV_8UC1, cv::Scalar(level)), c;
  cv::applyColorMap(l, c, colormap);
  return c.at<cv::Vec3b>(0, 0);
}

cv::Mat random_image(int rows, int cols, unsigned seed) {
  cv::RNG rng(seed);
  cv::Mat image(rows, cols, CV_8UC3);
  rng.fill(image, cv::RNG::UNIFORM, 0, 256);
  return image;
}

}  // namespace

// A pure red RGB image under a zero map of "hot" (black at 0): only the image's share
// of red is left, and where it lands depends on the output order alone.
TEST(SaliencyRender, ColourOrderIsExplicitOnBothSides) {
  const cv::Mat red_rgb(6, 8, CV_8UC3, cv::Scalar(255, 0, 0));
  const cv::Mat zero = cv::Mat::zeros(6, 8, CV_32FC1);
  ASSERT_EQ(colour_at(cv::COLORMAP_HOT, 0), cv::Vec3b(0, 0, 0));
  const auto opts = [](av::ColourOrder in, av::ColourOrder out) {
    return av::SaliencyRenderOptions().colormap(cv::COLORMAP_HOT).image_weight(0.6).input_order(in).output_order(out);
  };
  using av::ColourOrder;
  const cv::Mat bgr = av::render_saliency(red_rgb, zero, opts(ColourOrder::kRgb, ColourOrder::kBgr));
  ASSERT_EQ(bgr.type(), CV_8UC3);
  ASSERT_EQ(bgr.size(), red_rgb.size());
  EXPECT_EQ(bgr.at<cv::Vec3b>(3, 4), cv::Vec3b(0, 0, 153));  // 255 * 0.6, red last
  const cv::Mat rgb = av::render_saliency(red_rgb, zero, opts(ColourOrder::kRgb, ColourOrder::kRgb));
  EXPECT_EQ(rgb.at<cv::Vec3b>(3, 4), cv::Vec3b(153, 0, 0));  // red first
  // The same bytes read as BGR are blue: first in BGR, last in RGB.
  const cv::Mat blue = av::render_saliency(red_rgb, zero, opts(ColourOrder::kBgr, ColourOrder::kBgr));
  EXPECT_EQ(blue.at<cv::Vec3b>(3, 4), cv::Vec3b(153, 0, 0));
  const cv::Mat blue_rgb = av::render_saliency(red_rgb, zero, opts(ColourOrder::kBgr, ColourOrder::kRgb));
  EXPECT_EQ(blue_rgb.at<cv::Vec3b>(3, 4), cv::Vec3b(0, 0, 153));
  EXPECT_EQ(av::parse_colour_order("RGB"), av::ColourOrder::kRgb);
  EXPECT_EQ(av::parse_colour_order("bgr"), av::ColourOrder::kBgr);
  EXPECT_TRUE(contains(error_message([] { av::parse_colour_order("hsv"); }), "rgb or bgr"));
}

// round((1 - w) * jet(255) + w * image) with jet(255) = BGR (0,0,128), w = 0.3,
// image BGR (10,20,30): (0.3*10, 0.3*20, 0.7*128 + 0.3*30) = (3, 6, 98.6 -> 99).
TEST(SaliencyRender, BlendMatchesAHandComputationForJetAtOne) {
  ASSERT_EQ(colour_at(cv::COLORMAP_JET, 255), cv::Vec3b(0, 0, 128));
  const cv::Mat image(5, 7, CV_8UC3, cv::Scalar(10, 20, 30));
  const cv::Mat one(5, 7, CV_32FC1, cv::Scalar(1.0f));
  const auto out = av::render_saliency(image, one, av::SaliencyRenderOptions().image_weight(0.3));
  EXPECT_EQ(out.at<cv::Vec3b>(2, 3), cv::Vec3b(3, 6, 99));
  // Values above 1 are clamped to 1; grey input is spread over three channels.
  const cv::Mat over(5, 7, CV_32FC1, cv::Scalar(7.0f));
  EXPECT_EQ(av::render_saliency(image, over, av::SaliencyRenderOptions().image_weight(0.3)).at<cv::Vec3b>(0, 0),
            cv::Vec3b(3, 6, 99));
  const cv::Mat grey(5, 7, CV_8UC1, cv::Scalar(20));
  EXPECT_EQ(av::render_saliency(grey, one, av::SaliencyRenderOptions().image_weight(0.3)).at<cv::Vec3b>(0, 0),
            cv::Vec3b(6, 6, 96));  // 0.7*128 + 0.3*20 = 95.6
}

TEST(SaliencyRender, ThresholdColoursOnlyPixelsAtOrAboveIt) {
  const cv::Mat image = random_image(16, 20, 7);
  cv::Mat map(16, 20, CV_32FC1);
  for (int y = 0; y < map.rows; ++y) {
    for (int x = 0; x < map.cols; ++x) map.at<float>(y, x) = static_cast<float>(x) / (map.cols - 1);
  }
  const auto blend = av::render_saliency(image, map, av::SaliencyRenderOptions());
  const auto hot = av::render_saliency(image, map, av::SaliencyRenderOptions().mode(av::SaliencyMode::kThreshold).threshold(0.5));
  int below = 0, above = 0;
  for (int y = 0; y < map.rows; ++y) {
    for (int x = 0; x < map.cols; ++x) {
      if (map.at<float>(y, x) < 0.5f) {
        ASSERT_EQ(hot.at<cv::Vec3b>(y, x), image.at<cv::Vec3b>(y, x)) << "at " << x << "," << y;
        ++below;
      } else {
        ASSERT_EQ(hot.at<cv::Vec3b>(y, x), blend.at<cv::Vec3b>(y, x)) << "at " << x << "," << y;
        ++above;
      }
    }
  }
  EXPECT_EQ(below, 16 * 10);
  EXPECT_EQ(above, 16 * 10);
}

TEST(SaliencyRender, ContourDrawsGreenOnTheBoundaryAndLeavesTheRest) {
  const cv::Mat image(40, 40, CV_8UC3, cv::Scalar(50, 60, 70));
  cv::Mat map = cv::Mat::zeros(40, 40, CV_32FC1);
  map(cv::Rect(10, 10, 20, 20)).setTo(0.9f);
  const auto out = av::render_saliency(image, map, av::SaliencyRenderOptions().mode(av::SaliencyMode::kContour));
  EXPECT_EQ(out.at<cv::Vec3b>(10, 20), cv::Vec3b(0, 255, 0));  // on the square's edge
  EXPECT_EQ(out.at<cv::Vec3b>(20, 20), cv::Vec3b(50, 60, 70));  // inside
  EXPECT_EQ(out.at<cv::Vec3b>(2, 2), cv::Vec3b(50, 60, 70));    // outside
}

// pytorch-grad-cam's show_cam_on_image on a 2x2 image, use_rgb, jet, weight 0.5.
// mask [[0,1],[0.5,0.25]] -> levels uint8(255*mask) = [[0,255],[127,63]] (truncated),
// jet in RGB: (0,0,128) (128,0,0) (126,255,130) (0,124,255). Pixel (0,0), red:
// 0.5*0/255 + 0.5*0.2 = 0.1; the blend's maximum is pixel (1,1) blue:
// 0.5*255/255 + 0.5*0.75 = 0.875; uint8(255 * 0.1 / 0.875) = uint8(29.14) = 29.
// All twelve values from numpy 1.24 running the original formula.
TEST(ShowCamOnImage, ReproducesPytorchGradCamIncludingTheDivisionByTheMax) {
  cv::Mat image(2, 2, CV_32FC3);
  image.at<cv::Vec3f>(0, 0) = {0.2f, 0.4f, 0.6f};
  image.at<cv::Vec3f>(0, 1) = {1.0f, 1.0f, 1.0f};
  image.at<cv::Vec3f>(1, 0) = {0.0f, 0.0f, 0.0f};
  image.at<cv::Vec3f>(1, 1) = {0.5f, 0.25f, 0.75f};
  const cv::Mat mask = (cv::Mat_<float>(2, 2) << 0.0f, 1.0f, 0.5f, 0.25f);
  const auto out = av::show_cam_on_image(image, mask, true, cv::COLORMAP_JET, 0.5);
  ASSERT_EQ(out.type(), CV_8UC3);
  EXPECT_EQ(out.at<cv::Vec3b>(0, 0), cv::Vec3b(29, 58, 160));
  EXPECT_EQ(out.at<cv::Vec3b>(0, 1), cv::Vec3b(218, 145, 145));
  EXPECT_EQ(out.at<cv::Vec3b>(1, 0), cv::Vec3b(72, 145, 74));
  EXPECT_EQ(out.at<cv::Vec3b>(1, 1), cv::Vec3b(72, 107, 255));
  const auto w3 = av::show_cam_on_image(image, mask, true, cv::COLORMAP_JET, 0.3);
  EXPECT_EQ(w3.at<cv::Vec3b>(0, 0), cv::Vec3b(16, 33, 146));
  EXPECT_EQ(w3.at<cv::Vec3b>(1, 1), cv::Vec3b(41, 114, 255));
  // use_rgb false: the heatmap stays BGR, and the maximum is now 0.5*255/255 + 0.5*1 at
  // pixel (0,1) (jet(255) = BGR (0,0,128): 0.5*128/255 + 0.5 = 0.75098 in the red slot).
  const auto bgr = av::show_cam_on_image(image, mask, false, cv::COLORMAP_JET, 0.5);
  EXPECT_EQ(bgr.at<cv::Vec3b>(0, 0), cv::Vec3b(119, 67, 101));
  EXPECT_EQ(bgr.at<cv::Vec3b>(0, 1), cv::Vec3b(169, 169, 255));
  EXPECT_EQ(bgr.at<cv::Vec3b>(1, 0), cv::Vec3b(86, 169, 83));
  EXPECT_EQ(bgr.at<cv::Vec3b>(1, 1), cv::Vec3b(254, 125, 127));
  // The original rejects an image with values above 1, and we a non-float one.
  cv::Mat bright = image.clone();
  bright.at<cv::Vec3f>(0, 0)[0] = 1.5f;
  EXPECT_TRUE(contains(error_message([&] { av::show_cam_on_image(bright, mask); }), "range [0, 1]"));
  cv::Mat bytes;
  image.convertTo(bytes, CV_8UC3, 255.0);
  EXPECT_THROW(av::show_cam_on_image(bytes, mask), c10::Error);
  EXPECT_THROW(av::show_cam_on_image(image, mask, true, cv::COLORMAP_JET, 1.5), c10::Error);
}

// render_saliency's grad_cam_compatible mode is show_cam_on_image on img/255.
TEST(ShowCamOnImage, RenderSaliencyCompatibleModeIsTheSameComputation) {
  const cv::Mat image = random_image(9, 11, 3);
  cv::Mat map(9, 11, CV_32FC1);
  cv::RNG(4).fill(map, cv::RNG::UNIFORM, 0.0f, 1.0f);
  cv::Mat image01(image.size(), CV_32FC3);
  for (int y = 0; y < image.rows; ++y) {
    for (int x = 0; x < image.cols; ++x) {
      for (int c = 0; c < 3; ++c) image01.at<cv::Vec3f>(y, x)[c] = image.at<cv::Vec3b>(y, x)[c] / 255.0f;
    }
  }
  const auto reference = av::show_cam_on_image(image01, map, false, cv::COLORMAP_JET, 0.4);
  const auto ours = av::render_saliency(image, map, av::SaliencyRenderOptions().image_weight(0.4).grad_cam_compatible(true));
  EXPECT_EQ(cv::norm(reference, ours, cv::NORM_INF), 0.0);
  double peak = 0;
  cv::minMaxIdx(ours.reshape(1), nullptr, &peak);
  EXPECT_EQ(peak, 255.0) << "the blend is divided by its maximum";
}

TEST(Colormaps, EveryNameRoundTripsAndUnknownNamesListTheValidOnes) {
  const auto names = av::colormap_names();
  ASSERT_EQ(names.size(), 22u);
  for (int i = 0; i < static_cast<int>(names.size()); ++i) {
    EXPECT_EQ(av::colormap_by_name(names[static_cast<size_t>(i)]), i) << names[static_cast<size_t>(i)];
    EXPECT_EQ(av::colormap_name(i), names[static_cast<size_t>(i)]);
  }
  EXPECT_EQ(av::colormap_by_name("jet"), cv::COLORMAP_JET);
  EXPECT_EQ(av::colormap_by_name("Viridis"), cv::COLORMAP_VIRIDIS);
  EXPECT_EQ(av::colormap_by_name("twilight_shifted"), cv::COLORMAP_TWILIGHT_SHIFTED);
  EXPECT_EQ(av::colormap_by_name("turbo"), cv::COLORMAP_TURBO);
  EXPECT_EQ(av::colormap_by_name("deepgreen"), cv::COLORMAP_DEEPGREEN);
  const auto message = error_message([] { av::colormap_by_name("sunset"); });
  EXPECT_TRUE(contains(message, "sunset")) << message;
  EXPECT_TRUE(contains(message, "jet")) << message;
  EXPECT_TRUE(contains(message, "deepgreen")) << message;
  EXPECT_THROW(av::colormap_name(22), c10::Error);
}

TEST(SaliencyRender, ColourBarWidensTheImageAndRunsFromZeroAtTheBottomToOneAtTheTop) {
  const cv::Mat image(60, 40, CV_8UC3, cv::Scalar(90, 90, 90));
  const cv::Mat map = cv::Mat::zeros(60, 40, CV_32FC1);
  auto opts = av::SaliencyRenderOptions().colormap(cv::COLORMAP_VIRIDIS).colour_bar(true);
  const auto out = av::render_saliency(image, map, opts);
  ASSERT_EQ(out.rows, 60);
  ASSERT_GT(out.cols, 40);
  const auto top = colour_at(cv::COLORMAP_VIRIDIS, 255), bottom = colour_at(cv::COLORMAP_VIRIDIS, 0);
  int bar_columns = 0;
  for (int x = 40; x < out.cols; ++x) {
    if (out.at<cv::Vec3b>(0, x) == top && out.at<cv::Vec3b>(59, x) == bottom) ++bar_columns;
  }
  EXPECT_GE(bar_columns, 8) << "a bar at least 8 px wide";
  // The image part is the plain rendering, and in RGB the bar is too.
  const auto plain = av::render_saliency(image, map, opts.colour_bar(false));
  EXPECT_EQ(cv::norm(plain, out(cv::Rect(0, 0, 40, 60)), cv::NORM_INF), 0.0);
  const auto rgb = av::render_saliency(image, map, opts.colour_bar(true).output_order(av::ColourOrder::kRgb));
  cv::Mat back;
  cv::cvtColor(rgb, back, cv::COLOR_RGB2BGR);
  EXPECT_EQ(cv::norm(back, out, cv::NORM_INF), 0.0);
}

TEST(SaliencyRender, LabelDarkensTheTopLeftOnly) {
  const cv::Mat image(64, 96, CV_8UC3, cv::Scalar(250, 250, 250));
  const cv::Mat map = cv::Mat::zeros(64, 96, CV_32FC1);
  const auto opts = av::SaliencyRenderOptions().image_weight(1.0);
  const auto plain = av::render_saliency(image, map, opts);
  const auto labelled = av::render_saliency(image, map, av::SaliencyRenderOptions(opts).label("cat 0.93"));
  EXPECT_EQ(labelled.at<cv::Vec3b>(1, 1), cv::Vec3b(16, 16, 16));  // the box
  EXPECT_EQ(labelled.at<cv::Vec3b>(60, 90), plain.at<cv::Vec3b>(60, 90));
  cv::Mat white_text;
  cv::inRange(labelled(cv::Rect(0, 0, 48, 16)), cv::Scalar(200, 200, 200), cv::Scalar(255, 255, 255), white_text);
  EXPECT_GT(cv::countNonZero(white_text), 5) << "light text on the dark box";
  cv::Mat grey(10, 10, CV_8UC1, cv::Scalar(200));
  av::burn_label(grey, "");
  EXPECT_EQ(cv::countNonZero(grey != 200), 0) << "empty text leaves the image";
  cv::Mat floats(4, 4, CV_32FC1);
  EXPECT_THROW(av::burn_label(floats, "x"), c10::Error);
}

TEST(SaliencyRender, RejectsAMapOfAnotherSizeNamingBoth) {
  const cv::Mat image(48, 64, CV_8UC3, cv::Scalar::all(0));
  const cv::Mat map = cv::Mat::zeros(24, 32, CV_32FC1);
  const auto message = error_message([&] { av::render_saliency(image, map); });
  EXPECT_TRUE(contains(message, "64x48")) << message;
  EXPECT_TRUE(contains(message, "32x24")) << message;
  EXPECT_THROW(av::render_saliency(image, cv::Mat::zeros(48, 64, CV_64FC1)), c10::Error);
  EXPECT_THROW(av::render_saliency(image, cv::Mat::zeros(48, 64, CV_32FC1), av::SaliencyRenderOptions().image_weight(2)),
               c10::Error);
}

TEST(TileGrid, CellsAreTheLargestTileAndCaptionsAddAStrip) {
  const cv::Mat a(20, 10, CV_8UC3, cv::Scalar(255, 0, 0));  // 10 wide, 20 high
  const cv::Mat b(15, 30, CV_8UC3, cv::Scalar(0, 255, 0));
  const cv::Mat c(5, 5, CV_8UC3, cv::Scalar(0, 0, 255));
  const auto grid = av::tile_grid({a, b, c}, 2);
  ASSERT_EQ(grid.type(), CV_8UC3);
  // cell 30 x 20; 2 columns, 2 rows: 4 + 2 * 34 = 72 wide, 4 + 2 * 24 = 52 high.
  EXPECT_EQ(grid.size(), cv::Size(72, 52));
  EXPECT_EQ(grid.at<cv::Vec3b>(4, 4 + 10), cv::Vec3b(255, 0, 0));         // a, centred: x 14..23
  EXPECT_EQ(grid.at<cv::Vec3b>(4, 4), cv::Vec3b(32, 32, 32));             // background beside a
  EXPECT_EQ(grid.at<cv::Vec3b>(4, 38), cv::Vec3b(0, 255, 0));             // b at column 2
  EXPECT_EQ(grid.at<cv::Vec3b>(28, 4 + 12), cv::Vec3b(0, 0, 255));        // c on row 2, centred
  const auto captioned = av::tile_grid({a, b, c}, 2, {"a", "b", "c"});
  EXPECT_EQ(captioned.size(), cv::Size(72, 92));
  EXPECT_EQ(av::tile_grid({a, b, c}, 5).size(), cv::Size(4 + 3 * 34, 28));  // columns capped at 3
  EXPECT_THROW(av::tile_grid({a, b}, 2, {"only one"}), c10::Error);
  EXPECT_THROW(av::tile_grid({}, 2), c10::Error);
  EXPECT_THROW(av::tile_grid({a, cv::Mat(3, 3, CV_8UC1)}, 2), c10::Error);
}

// Letterboxing keeps the aspect ratio and its inverse puts maps back where the image was.
TEST(SegmentationRender, LetterboxAndItsInverseRoundTrip) {
  const auto box = attend::vision::letterbox_geometry({200, 100}, {64, 64});  // 200 wide, 100 high
  EXPECT_EQ(box.inner, cv::Rect(0, 16, 64, 32));
  cv::Mat image(100, 200, CV_8UC3, cv::Scalar(10, 20, 30));
  image(cv::Rect(0, 0, 100, 100)).setTo(cv::Scalar(200, 100, 50));  // left half
  const auto fitted = attend::vision::letterbox(image, box);
  ASSERT_EQ(fitted.size(), cv::Size(64, 64));
  EXPECT_EQ(fitted.at<cv::Vec3b>(5, 30), cv::Vec3b(0, 0, 0));          // padding
  EXPECT_EQ(fitted.at<cv::Vec3b>(30, 10), cv::Vec3b(200, 100, 50));    // left half
  EXPECT_EQ(fitted.at<cv::Vec3b>(30, 50), cv::Vec3b(10, 20, 30));      // right half
  // A label map drawn on the canvas comes back at the source size, in the same place.
  cv::Mat labels(64, 64, CV_8UC1, cv::Scalar(0));
  labels(cv::Rect(0, 16, 32, 32)).setTo(3);
  const auto back = attend::vision::unletterbox(labels, box, cv::INTER_NEAREST);
  ASSERT_EQ(back.size(), image.size());
  EXPECT_EQ(back.at<uchar>(50, 20), 3);
  EXPECT_EQ(back.at<uchar>(50, 180), 0);
  EXPECT_EQ(cv::countNonZero(back == 3), 100 * 100);
  EXPECT_THROW(attend::vision::letterbox(image, attend::vision::letterbox_geometry({10, 10}, {64, 64})),
               std::invalid_argument);
}

TEST(SegmentationRender, VocColoursOverlaysContoursAndLegend) {
  // The PASCAL VOC palette: 1 = (128,0,0), 2 = (0,128,0), 15 = (192,128,128) in RGB.
  EXPECT_EQ(attend::vision::label_colour(1), cv::Vec3b(0, 0, 128));
  EXPECT_EQ(attend::vision::label_colour(2), cv::Vec3b(0, 128, 0));
  EXPECT_EQ(attend::vision::label_colour(15), cv::Vec3b(128, 128, 192));
  EXPECT_EQ(attend::vision::label_colour(0), cv::Vec3b(0, 0, 0));
  EXPECT_EQ(attend::vision::label_colour(255), cv::Vec3b(255, 255, 255));
  cv::Mat image(40, 120, CV_8UC3, cv::Scalar(100, 100, 100));
  cv::Mat labels(40, 120, CV_8UC1, cv::Scalar(0));
  labels(cv::Rect(10, 10, 20, 20)).setTo(1);
  labels(cv::Rect(60, 10, 20, 20)).setTo(2);
  const auto out = attend::vision::overlay_labels(image, labels, {"shirt", "bag"});
  // Two legend rows of 14 pixels (+4) below the image.
  ASSERT_EQ(out.size(), cv::Size(120, 40 + 2 * 14 + 4));
  EXPECT_EQ(out.at<cv::Vec3b>(5, 5), cv::Vec3b(100, 100, 100));  // background untouched
  EXPECT_EQ(out.at<cv::Vec3b>(20, 20), cv::Vec3b(50, 50, 114));   // (100 + colour) / 2
  EXPECT_EQ(out.at<cv::Vec3b>(10, 20), attend::vision::label_colour(1));  // its contour
  EXPECT_THROW(attend::vision::overlay_labels(image, labels, {"shirt"}), std::invalid_argument);
  EXPECT_THROW(attend::vision::overlay_labels(image, labels(cv::Rect(0, 0, 60, 40)), {"a", "b"}), std::invalid_argument);
}
