// Saliency metrics: each against a hand computation, with a model whose target
// probability is a known function of the pixels it sees, and the batched deletion /
// insertion curves against a plain loop.
#include <attend/models/saliency_metrics.h>

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

namespace am = attend::models;

namespace {

double sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

/// Class 0 scores the sum of the input over channels and pixels, class 1 a constant:
/// softmax gives P(0 | x) = sigmoid(sum x - other), sigmoid gives sigmoid(sum x).
/// Counts its calls and the largest batch it saw.
class SumModel : public am::SaliencyModel {
 public:
  explicit SumModel(double other = 0.0, std::int64_t channels = 1) : other_(other), channels_(channels) {}
  std::string describe() const override { return "sum"; }
  std::vector<std::string> layers() const override { return {"input"}; }
  std::string default_layer() const override { return "input"; }
  std::int64_t channels() const override { return channels_; }
  am::SplitForward forward(const torch::Tensor& inputs, const std::vector<std::string>& /*layers*/,
                           bool /*track*/) override {
    return {logits(inputs), {}};
  }
  torch::Tensor logits(const torch::Tensor& inputs) override {
    ++calls;
    largest = std::max(largest, inputs.size(0));
    EXPECT_FALSE(torch::GradMode::is_enabled()) << "scored with autograd on";
    const auto sums = inputs.to(torch::kFloat64).sum({1, 2, 3});
    return torch::stack({sums, torch::full_like(sums, other_)}, 1);
  }

  int calls = 0;
  std::int64_t largest = 0;

 private:
  double other_;
  std::int64_t channels_;
};

/// The image [1,1,2,3] = [[2, -1, 0.5], [1, -0.5, 0]]: pixel values by flat index.
const std::vector<double> kValues = {2, -1, 0.5, 1, -0.5, 0};

torch::Tensor hand_image() { return torch::tensor(kValues, torch::kFloat64).view({1, 1, 2, 3}); }

std::vector<double> values_of(const torch::Tensor& t) {
  const auto c = t.to(torch::kFloat64).contiguous().cpu();
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}

void expect_near_all(const std::vector<double>& got, const std::vector<double>& expected, double tol = 1e-12) {
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expected[i], tol) << "at " << i;
}

double trapezoid(const std::vector<double>& y, const std::vector<double>& x) {
  double area = 0;
  for (size_t k = 0; k + 1 < y.size(); ++k) area += (x[k + 1] - x[k]) * (y[k] + y[k + 1]) / 2;
  return area;
}

torch::Tensor random_uniform(std::vector<std::int64_t> shape, std::uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return torch::rand(shape, gen, torch::kFloat64) * 2 - 1;
}

template <typename F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "no error";
}

#define EXPECT_MESSAGE(call, text) EXPECT_NE(message_of([&] { call; }).find(text), std::string::npos) \
    << message_of([&] { call; })

}  // namespace

TEST(SaliencyMetrics, TrapezoidAucOfHandCurves) {
  const auto curves = torch::tensor({0.0, 1.0, 1.0, 1.0, 0.5, 0.0}, torch::kFloat64).view({2, 3});
  const auto fractions = torch::tensor({0.0, 0.25, 1.0}, torch::kFloat64);
  // 0.25 (0 + 1) / 2 + 0.75 (1 + 1) / 2 and 0.25 (1 + 0.5) / 2 + 0.75 (0.5 + 0) / 2.
  expect_near_all(values_of(am::trapezoid_auc(curves, fractions)), {0.875, 0.375});
  EXPECT_MESSAGE(am::trapezoid_auc(curves, torch::tensor({0.0, 1.0, 0.5}, torch::kFloat64)),
                 "expected non-decreasing fractions");
  EXPECT_MESSAGE(am::trapezoid_auc(curves, fractions.slice(0, 0, 2)),
                 "expected curves [B,n] and fractions [n] with n >= 2, got [2, 3] and [2]");

  // n_k = ceil(k N / S).
  expect_near_all(values_of(am::perturbation_fractions(6, 3)), {0, 1.0 / 3, 2.0 / 3, 1}, 0);
  expect_near_all(values_of(am::perturbation_fractions(6, 4)), {0, 2.0 / 6, 3.0 / 6, 5.0 / 6, 1}, 0);
  expect_near_all(values_of(am::perturbation_fractions(2, 4)), {0, 0.5, 0.5, 1, 1}, 0);
}

TEST(SaliencyMetrics, DeletionAndInsertionFollowTheRemainingPixels) {
  SumModel model;
  const auto x = hand_image();
  const auto bright = x.view({1, 2, 3});
  const auto targets = torch::tensor({0}, torch::kInt64);
  const auto options = am::PerturbationOptions().steps(3);
  // Bright first deletes 2 and 1, then 0.5 and 0, then -0.5 and -1 (sum 2 at the start).
  const auto del = am::deletion_curves(model, x, bright, targets, options);
  const std::vector<double> del_bright = {sigmoid(2), sigmoid(-1), sigmoid(-1.5), 0.5};
  expect_near_all(values_of(del.curves), del_bright);
  expect_near_all(values_of(del.fractions), {0, 1.0 / 3, 2.0 / 3, 1});
  EXPECT_NEAR(del.auc.item<double>(), trapezoid(del_bright, {0, 1.0 / 3, 2.0 / 3, 1}), 1e-12);
  // Reversed: deletes -1 and -0.5 first.
  const auto del_rev = am::deletion_curves(model, x, -bright, targets, options);
  expect_near_all(values_of(del_rev.curves), {sigmoid(2), sigmoid(3.5), sigmoid(3), 0.5});
  EXPECT_LT(del.auc.item<double>(), del_rev.auc.item<double>());

  const auto ins = am::insertion_curves(model, x, bright, targets, options);
  expect_near_all(values_of(ins.curves), {0.5, sigmoid(3), sigmoid(3.5), sigmoid(2)});
  const auto ins_rev = am::insertion_curves(model, x, -bright, targets, options);
  expect_near_all(values_of(ins_rev.curves), {0.5, sigmoid(-1.5), sigmoid(-1), sigmoid(2)});
  EXPECT_GT(ins.auc.item<double>(), ins_rev.auc.item<double>());

  // A baseline of ones (a scalar, broadcast): deleted pixels count 1 each.
  const auto ones = am::deletion_curves(model, x, bright, targets,
                                        am::PerturbationOptions(options).baseline(torch::tensor(1.0)));
  expect_near_all(values_of(ones.curves), {sigmoid(2), sigmoid(1), sigmoid(2.5), sigmoid(6)});
  // Insertion from a per-image baseline [B,C,H,W] of -1: sums -6, 3 - 4, 3.5 - 2, 2.
  const auto minus = am::insertion_curves(model, x, bright, targets,
                                          am::PerturbationOptions(options).baseline(-torch::ones_like(x)));
  expect_near_all(values_of(minus.curves), {sigmoid(-6), sigmoid(-1), sigmoid(1.5), sigmoid(2)});
}

TEST(SaliencyMetrics, MultiLabelUsesTheSigmoidOfTheTargetLogit) {
  SumModel model(/*other=*/1.0);
  const auto x = hand_image();
  const auto map = x.view({1, 2, 3});
  const auto options = am::PerturbationOptions().steps(3);
  const std::vector<double> sums = {2, -1, -1.5, 0};
  std::vector<double> softmax0, softmax1, sigmoid0, sigmoid1;
  for (const double s : sums) {
    softmax0.push_back(sigmoid(s - 1));
    softmax1.push_back(sigmoid(1 - s));
    sigmoid0.push_back(sigmoid(s));
    sigmoid1.push_back(sigmoid(1));
  }
  const auto zero = torch::tensor({0}, torch::kInt64), one = torch::tensor({1}, torch::kInt64);
  expect_near_all(values_of(am::deletion_curves(model, x, map, zero, options).curves), softmax0);
  expect_near_all(values_of(am::deletion_curves(model, x, map, one, options).curves), softmax1);
  const auto multi = am::PerturbationOptions(options).multi_label(true);
  expect_near_all(values_of(am::deletion_curves(model, x, map, zero, multi).curves), sigmoid0);
  expect_near_all(values_of(am::deletion_curves(model, x, map, one, multi).curves), sigmoid1);
}

TEST(SaliencyMetrics, BatchingDoesNotChangeTheCurvesWhichMatchAPlainLoop) {
  const std::int64_t B = 3, C = 2, H = 5, W = 7, N = H * W, S = 8;
  const auto x = random_uniform({B, C, H, W}, 1);
  const auto maps = random_uniform({B, H, W}, 2);
  const auto baseline = random_uniform({B, C, H, W}, 3);
  const auto targets = torch::tensor({0, 1, 0}, torch::kInt64);
  const auto options = am::PerturbationOptions().steps(S).baseline(baseline);
  std::vector<am::PerturbationCurves> runs;
  for (const std::int64_t batch : {1, 5, 64}) {
    SumModel model(0.25, C);
    runs.push_back(am::deletion_curves(model, x, maps, targets, am::PerturbationOptions(options).batch(batch)));
    EXPECT_EQ(model.calls, (B * (S + 1) + batch - 1) / batch) << "batch " << batch;
    EXPECT_EQ(model.largest, std::min<std::int64_t>(batch, B * (S + 1)));
  }
  EXPECT_TRUE(torch::equal(runs[0].curves, runs[1].curves));
  EXPECT_TRUE(torch::equal(runs[0].curves, runs[2].curves));
  EXPECT_TRUE(torch::equal(runs[0].auc, runs[2].auc));

  // The slow reference: per image, sort the pixels by hand and replace them one step at a time.
  for (std::int64_t b = 0; b < B; ++b) {
    const auto m = values_of(maps[b]);
    std::vector<std::int64_t> order(N);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](auto p, auto q) { return m[p] > m[q]; });
    const auto xb = x[b].reshape({C, N}), bb = baseline[b].reshape({C, N});
    for (std::int64_t k = 0; k <= S; ++k) {
      const auto n = (k * N + S - 1) / S;
      auto perturbed = xb.clone();
      for (std::int64_t i = 0; i < n; ++i) perturbed.select(1, order[i]).copy_(bb.select(1, order[i]));
      const double s = perturbed.sum().item<double>();
      const double p = targets[b].item<std::int64_t>() == 0 ? sigmoid(s - 0.25) : sigmoid(0.25 - s);
      EXPECT_NEAR(runs[0].curves[b][k].item<double>(), p, 1e-12) << "image " << b << " step " << k;
    }
  }
}

TEST(SaliencyMetrics, TiesAreBrokenByPixelIndex) {
  const auto small = torch::tensor({1.0, 0.0, 1.0, 0.0, 1.0, 0.0}).view({1, 2, 3});
  EXPECT_EQ(values_of(am::saliency_order(small)), std::vector<double>({0, 2, 4, 1, 3, 5}));

  // Many ties in large maps: the stable order of a plain std::stable_sort, every time.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const auto levels = torch::randint(0, 4, {2, 40, 50}, gen, torch::kFloat32);
  const auto order = am::saliency_order(levels);
  EXPECT_TRUE(torch::equal(order, am::saliency_order(levels)));
  for (std::int64_t b = 0; b < 2; ++b) {
    const auto m = values_of(levels[b]);
    std::vector<double> expected(m.size());
    std::iota(expected.begin(), expected.end(), 0.0);
    std::stable_sort(expected.begin(), expected.end(),
                     [&](double p, double q) { return m[static_cast<size_t>(p)] > m[static_cast<size_t>(q)]; });
    EXPECT_EQ(values_of(order[b]), expected) << "image " << b;
  }

  // A constant map deletes pixels in index order.
  SumModel model;
  const auto curve = am::deletion_curves(model, hand_image(), torch::zeros({1, 2, 3}), torch::tensor({0}, torch::kInt64),
                                         am::PerturbationOptions().steps(6));
  std::vector<double> expected;
  for (size_t k = 0; k <= kValues.size(); ++k) {
    expected.push_back(sigmoid(std::accumulate(kValues.begin() + static_cast<std::ptrdiff_t>(k), kValues.end(), 0.0)));
  }
  expect_near_all(values_of(curve.curves), expected);
}

TEST(SaliencyMetrics, ConfidenceDropAndIncreaseByHand) {
  // Three copies of the hand image on 2 channels: sum 4, p = sigmoid(4).
  const auto x = hand_image().expand({3, 2, 2, 3}).contiguous();
  auto maps = torch::zeros({3, 2, 3}, torch::kFloat32);
  maps[0][0][0] = 1;    // keeps the 2s: q = sigmoid(4) = p, no drop, no increase
  maps[1][0][0] = 0.5;  // halves them: q = sigmoid(2)
  maps[2][0][0] = 1;    // keeps the 2s and the 1s: q = sigmoid(6) > p
  maps[2][1][0] = 1;
  const auto targets = torch::tensor({0, 0, 0}, torch::kInt64);
  for (const std::int64_t batch : {1, 64}) {
    SumModel model(0.0, 2);
    const auto change = am::confidence_change(model, x, maps, targets, false, batch);
    expect_near_all(values_of(change.p), {sigmoid(4), sigmoid(4), sigmoid(4)});
    expect_near_all(values_of(change.q), {sigmoid(4), sigmoid(2), sigmoid(6)});
    const double dropped = (sigmoid(4) - sigmoid(2)) / sigmoid(4);
    expect_near_all(values_of(change.drop), {0, dropped, 0});
    EXPECT_EQ(values_of(change.increase), std::vector<double>({0, 0, 1}));
    EXPECT_NEAR(am::average_drop(change), 100 * dropped / 3, 1e-10);
    EXPECT_NEAR(am::increase_in_confidence(change), 100.0 / 3, 1e-10);
    EXPECT_EQ(model.calls, batch == 1 ? 6 : 1);
  }
  SumModel model(0.0, 2);
  EXPECT_MESSAGE(am::confidence_change(model, x, maps * 2, targets),
                 "confidence_change: expected maps in [0,1] (scale raw maps first), got values in [0, 2]");
}

TEST(SaliencyMetrics, PointingGameHitsMissesAndTolerance) {
  auto maps = torch::zeros({1, 5, 5});
  maps[0][1][1] = 1;
  auto mask = [](std::vector<std::pair<int, int>> pixels) {
    auto m = torch::zeros({1, 5, 5}, torch::kBool);
    for (auto [i, j] : pixels) m[0][i][j] = true;
    return m;
  };
  auto hit = [&](const torch::Tensor& ms, const torch::Tensor& m, double t) {
    return am::pointing_game(ms, m, t).item<bool>();
  };
  EXPECT_TRUE(hit(maps, mask({{1, 1}}), 0));
  EXPECT_FALSE(hit(maps, mask({{1, 2}}), 0));
  // (3,3) is at Euclidean distance sqrt(8) = 2.83 (Chebyshev 2) from the maximum (1,1).
  EXPECT_FALSE(hit(maps, mask({{3, 3}}), 2));
  EXPECT_FALSE(hit(maps, mask({{3, 3}}), 2.8));
  EXPECT_TRUE(hit(maps, mask({{3, 3}}), 2.9));
  EXPECT_TRUE(hit(maps, mask({{1, 3}}), 2));  // distance exactly 2
  EXPECT_FALSE(hit(maps, mask({}), 100)) << "an empty mask is a miss";

  // Two maxima: the first in row-major order, (0,4), is the point.
  auto ties = torch::zeros({1, 5, 5});
  ties[0][4][0] = 1;
  ties[0][0][4] = 1;
  EXPECT_TRUE(hit(ties, mask({{0, 4}}), 0));
  EXPECT_FALSE(hit(ties, mask({{4, 0}}), 0));

  // Batched: one value per image.
  const auto both = am::pointing_game(torch::cat({maps, ties}), torch::cat({mask({{1, 1}}), mask({{4, 0}})}));
  EXPECT_EQ(values_of(both), std::vector<double>({1, 0}));
  EXPECT_MESSAGE(am::pointing_game(maps, mask({}), -1), "expected a tolerance >= 0 pixels, got -1");
}

TEST(SaliencyMetrics, IouAndBestThresholdOnAHandExample) {
  const auto map = torch::tensor({0.9f, 0.8f, 0.1f, 0.0f,  //
                                  0.7f, 0.6f, 0.2f, 0.0f,  //
                                  0.3f, 0.4f, 0.5f, 0.0f,  //
                                  0.0f, 0.0f, 0.0f, 0.0f})
                       .view({1, 4, 4});
  auto block = torch::zeros({1, 4, 4}, torch::kBool);  // the top-left 2x2
  block.slice(1, 0, 2).slice(2, 0, 2).fill_(true);
  auto corner = torch::zeros({1, 4, 4}, torch::kBool);  // only (0,0)
  corner[0][0][0] = true;
  // Pixels >= t: 0.3 -> 7, 0.5 -> 5, 0.55 -> 4 (the block), 0.65 -> 3.
  expect_near_all(values_of(am::mask_iou(map, block, 0.3)), {4.0 / 7});
  expect_near_all(values_of(am::mask_iou(map, block, 0.5)), {4.0 / 5});
  expect_near_all(values_of(am::mask_iou(map, block, 0.55)), {1.0});
  expect_near_all(values_of(am::mask_iou(map, block, 0.65)), {3.0 / 4});

  // Empty union: 1 only when both are empty; one empty side gives 0.
  const auto none = torch::zeros({1, 4, 4}, torch::kBool);
  const auto zero_map = torch::zeros({1, 4, 4});
  expect_near_all(values_of(am::mask_iou(zero_map, none, 0.5)), {1.0});
  expect_near_all(values_of(am::mask_iou(zero_map, block, 0.5)), {0.0});
  expect_near_all(values_of(am::mask_iou(map, none, 0.5)), {0.0});

  // Means over {block, corner}: 0.3 -> (4/7 + 1/7)/2, 0.5 -> (4/5 + 1/5)/2,
  // 0.55 -> (1 + 1/4)/2 (best), 0.65 -> (3/4 + 1/3)/2.
  const auto sweep = am::best_threshold_iou(torch::cat({map, map}), torch::cat({block, corner}), {0.3, 0.5, 0.55, 0.65});
  EXPECT_EQ(sweep.threshold, 0.55);
  EXPECT_NEAR(sweep.mean_iou, 0.625, 1e-12);
  expect_near_all(sweep.mean_ious, {5.0 / 14, 0.5, 0.625, (0.75 + 1.0 / 3) / 2});
  expect_near_all(values_of(sweep.per_image), {1.0, 0.25});
  EXPECT_EQ(sweep.thresholds, std::vector<double>({0.3, 0.5, 0.55, 0.65}));

  const auto defaults = am::default_iou_thresholds();
  ASSERT_EQ(defaults.size(), 19u);
  EXPECT_DOUBLE_EQ(defaults.front(), 0.05);
  EXPECT_DOUBLE_EQ(defaults[9], 0.5);
  EXPECT_DOUBLE_EQ(defaults.back(), 0.95);
  // Both empty everywhere: IoU 1 at every threshold; the first wins the tie.
  const auto empty = am::best_threshold_iou(zero_map, none);
  EXPECT_EQ(empty.threshold, 0.05);
  EXPECT_EQ(empty.mean_ious, std::vector<double>(19, 1.0));
}

TEST(SaliencyMetrics, BadShapesAreNamed) {
  SumModel model;
  const auto x = hand_image();
  const auto map = x.view({1, 2, 3});
  const auto target = torch::tensor({0}, torch::kInt64);
  EXPECT_MESSAGE(am::deletion_curves(model, x, torch::zeros({1, 2, 4}), target),
                 "deletion_curves: expected maps [B,H,W] = [1, 2, 3] for inputs [1, 1, 2, 3], got [1, 2, 4]");
  EXPECT_MESSAGE(am::insertion_curves(model, x, torch::zeros({2, 3}), target),
                 "insertion_curves: expected maps [B,H,W], got [2, 3]");
  EXPECT_MESSAGE(am::deletion_curves(model, x.view({2, 3}), map, target),
                 "deletion_curves: expected floating inputs [B,C,H,W], got [2, 3]");
  EXPECT_MESSAGE(am::deletion_curves(model, x, map, torch::tensor({0, 1}, torch::kInt64)),
                 "expected targets [B] = [1] int64 (one class per image), got [2] Long");
  EXPECT_MESSAGE(am::deletion_curves(model, x, map, torch::tensor({2}, torch::kInt64)),
                 "deletion_curves: class 2 is out of range (the model has 2 classes)");
  EXPECT_MESSAGE(am::deletion_curves(model, x, map, target, am::PerturbationOptions().baseline(torch::zeros({1, 3, 3}))),
                 "expected a baseline broadcastable to the inputs [1, 1, 2, 3], got [1, 3, 3]");
  EXPECT_MESSAGE(am::deletion_curves(model, x, map, target, am::PerturbationOptions().steps(0)),
                 "expected at least 1 step, got 0");
  EXPECT_MESSAGE(am::deletion_curves(model, x, map, target, am::PerturbationOptions().batch(0)),
                 "expected a batch of at least 1 image, got 0");
  EXPECT_MESSAGE(am::deletion_curves(model, x, map * std::nan(""), target), "expected finite maps");
  EXPECT_MESSAGE(am::confidence_change(model, x, torch::zeros({1, 3, 2}), target),
                 "confidence_change: expected maps [B,H,W] = [1, 2, 3] for inputs [1, 1, 2, 3], got [1, 3, 2]");

  const auto maps = torch::zeros({1, 4, 5});
  EXPECT_MESSAGE(am::pointing_game(maps, torch::zeros({1, 4, 4}, torch::kBool)),
                 "pointing_game: expected bool masks of the maps' shape [1, 4, 5], got [1, 4, 4] Bool");
  EXPECT_MESSAGE(am::mask_iou(maps, torch::zeros({1, 4, 5}), 0.5),
                 "mask_iou: expected bool masks of the maps' shape [1, 4, 5], got [1, 4, 5] Float");
  EXPECT_MESSAGE(am::best_threshold_iou(maps, torch::zeros({1, 4, 5}, torch::kBool), {}),
                 "best_threshold_iou: expected at least one threshold");
}
