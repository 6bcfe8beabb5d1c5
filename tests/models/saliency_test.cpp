// CAM and the Grad-CAM family: each method against a hand computation of its formula,
// the CAM = Grad-CAM identity, Score-CAM's batches against its definition, Eigen-CAM's
// sign rule, the post-processing against OpenCV, and the CAM classifier.
#include <attend/models/cam.h>
#include <attend/models/registry.h>
#include <attend/models/saliency.h>

#include <torch/torch.h>

#include <opencv2/imgproc.hpp>

#include <gtest/gtest.h>

#include <cmath>

namespace am = attend::models;
using am::SaliencyMethod;

namespace {

/// A network whose target activation is its input: A = x [B,K,h,w], and class c
/// scores y_c = sum_kij V[c,k,i,j] A_k(ij)^2 / 2 + u_c sum_kij A_k(ij), so that
/// dy_c/dA_k(ij) = V[c,k,i,j] A_k(ij) + u_c: gradients that vary in space and sign.
class QuadraticModel : public am::SaliencyModel {
 public:
  QuadraticModel(torch::Tensor V, torch::Tensor u) : V_(std::move(V)), u_(std::move(u)) {}
  std::string describe() const override { return "quadratic"; }
  std::vector<std::string> layers() const override { return {"a"}; }
  std::string default_layer() const override { return "a"; }
  std::int64_t channels() const override { return V_.size(1); }
  am::SplitForward forward(const torch::Tensor& inputs, const std::vector<std::string>& layers, bool track) override {
    for (const auto& l : layers) TORCH_CHECK(l == "a", "unknown layer '", l, "' (quadratic has a)");
    auto A = track ? inputs.detach().requires_grad_(true) : inputs;
    std::optional<torch::NoGradGuard> guard;
    if (!track) guard.emplace();
    const auto logits = torch::einsum("ckij,bkij->bc", {V_, A * A / 2}) + A.sum({1, 2, 3}).unsqueeze(1) * u_;
    am::SplitForward out{logits, {}};
    for (size_t i = 0; i < layers.size(); ++i) out.activations.push_back(A);
    return out;
  }
  torch::Tensor logits(const torch::Tensor& inputs) override { return forward(inputs, {}, false).logits; }

  torch::Tensor V_, u_;
};

torch::Tensor random_in(std::vector<std::int64_t> shape, std::uint64_t seed, double lo = -1, double hi = 1) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return torch::rand(shape, gen, torch::kFloat64) * (hi - lo) + lo;
}

/// The raw map of `method` for image b and class c, by loops over the formula.
double hand_map(SaliencyMethod method, const torch::Tensor& A, const QuadraticModel& m, std::int64_t b,
                std::int64_t c, std::int64_t i, std::int64_t j) {
  const auto K = A.size(1), h = A.size(2), w = A.size(3);
  auto a = [&](std::int64_t k, std::int64_t y, std::int64_t x) { return A[b][k][y][x].item<double>(); };
  auto g = [&](std::int64_t k, std::int64_t y, std::int64_t x) {
    return m.V_[c][k][y][x].item<double>() * a(k, y, x) + m.u_[c].item<double>();
  };
  double out = 0;
  for (std::int64_t k = 0; k < K; ++k) {
    double sum_a = 0, sum_g = 0, weight = 0;
    for (std::int64_t y = 0; y < h; ++y) {
      for (std::int64_t x = 0; x < w; ++x) sum_a += a(k, y, x), sum_g += g(k, y, x);
    }
    switch (method) {
      case SaliencyMethod::kGradCam: weight = sum_g / static_cast<double>(h * w); break;
      case SaliencyMethod::kGradCamPlusPlus:
        for (std::int64_t y = 0; y < h; ++y) {
          for (std::int64_t x = 0; x < w; ++x) {
            const double gg = g(k, y, x);
            if (gg == 0) continue;
            const double r = gg * gg / (2 * gg * gg + sum_a * gg * gg * gg + 1e-6);
            weight += r * std::max(gg, 0.0);
          }
        }
        break;
      case SaliencyMethod::kXGradCam:
        for (std::int64_t y = 0; y < h; ++y) {
          for (std::int64_t x = 0; x < w; ++x) weight += a(k, y, x) * g(k, y, x) / (sum_a + 1e-7);
        }
        break;
      case SaliencyMethod::kHiResCam: out += g(k, i, j) * a(k, i, j); continue;
      case SaliencyMethod::kLayerCam: out += std::max(g(k, i, j), 0.0) * a(k, i, j); continue;
      default: ADD_FAILURE() << "no hand formula"; return 0;
    }
    out += weight * a(k, i, j);
  }
  return out;
}

/// A small CAM classifier with random weights and batch-norm statistics.
std::shared_ptr<am::CamClassifier> small_cam(std::uint64_t seed, bool multi = false) {
  torch::manual_seed(seed);
  auto options = am::CamNetOptions().channels(3).height(16).width(16).classes(4).filters({4, 6, 5}).pools(2);
  auto model = std::make_shared<am::CamClassifier>(options.multi_label(multi).to_json());
  // Statistics other than the identity, so that evaluation mode matters.
  torch::NoGradGuard no_grad;
  for (auto& b : model->module().named_buffers()) {
    if (b.key().find("running_mean") != std::string::npos) b.value().uniform_(-0.2, 0.2);
    if (b.key().find("running_var") != std::string::npos) b.value().uniform_(0.5, 2.0);
  }
  return model;
}

}  // namespace

TEST(Saliency, EachGradientMethodMatchesItsFormulaByHand) {
  const auto A = random_in({2, 3, 3, 4}, 1, -0.5, 1.5);
  QuadraticModel model(random_in({5, 3, 3, 4}, 2), random_in({5}, 3, -0.3, 0.3));
  const auto targets = torch::tensor({{1, 4}, {0, 2}}, torch::kInt64);
  for (const auto method : {SaliencyMethod::kGradCam, SaliencyMethod::kGradCamPlusPlus, SaliencyMethod::kXGradCam,
                            SaliencyMethod::kHiResCam, SaliencyMethod::kLayerCam}) {
    const auto r = am::compute_saliency(model, A, targets, am::SaliencyOptions().method(method));
    ASSERT_EQ(r.raw.size(), 1u);
    ASSERT_EQ(r.raw[0].sizes(), (std::vector<std::int64_t>{2, 2, 3, 4}));
    for (std::int64_t b = 0; b < 2; ++b) {
      for (std::int64_t t = 0; t < 2; ++t) {
        const auto c = targets[b][t].item<std::int64_t>();
        for (std::int64_t i = 0; i < 3; ++i) {
          for (std::int64_t j = 0; j < 4; ++j) {
            EXPECT_NEAR(r.raw[0][b][t][i][j].item<double>(), hand_map(method, A, model, b, c, i, j), 1e-10)
                << am::enum_name(method) << " b=" << b << " t=" << t << " at " << i << "," << j;
          }
        }
      }
    }
  }
}

TEST(Saliency, GradCamPlusPlusIgnoresZeroGradients) {
  // With V = 0 and u = 0 every gradient is 0: the 0/0 of the formula must give 0, not NaN.
  const auto A = random_in({1, 2, 2, 2}, 4, 0, 1);
  QuadraticModel model(torch::zeros({2, 2, 2, 2}, torch::kFloat64), torch::zeros({2}, torch::kFloat64));
  const auto r = am::compute_saliency(model, A, torch::tensor({{0}}, torch::kInt64),
                                      am::SaliencyOptions().method(SaliencyMethod::kGradCamPlusPlus));
  EXPECT_TRUE(torch::isfinite(r.raw[0]).all().item<bool>());
  EXPECT_EQ(r.raw[0].abs().max().item<double>(), 0.0);
  EXPECT_TRUE(torch::isfinite(r.maps).all().item<bool>());
}

TEST(Saliency, CamEqualsGradCamTimesTheMapSizeForAGapLinearHead) {
  auto cam = small_cam(11);
  auto model = am::classifier_saliency_model(cam, "cam");
  const auto x = torch::rand({3, 3, 16, 16});
  const auto targets = torch::tensor({{0, 3}, {1, 2}, {2, 0}}, torch::kInt64);
  const auto c = am::compute_saliency(*model, x, targets, am::SaliencyOptions().method(SaliencyMethod::kCam));
  const auto g = am::compute_saliency(*model, x, targets, am::SaliencyOptions().method(SaliencyMethod::kGradCam));
  const double Z = 4 * 4;  // 16 / 2^2
  ASSERT_EQ(c.raw[0].sizes(), (std::vector<std::int64_t>{3, 2, 4, 4}));
  EXPECT_TRUE(torch::allclose(c.raw[0], g.raw[0] * Z, 1e-4, 1e-5)) << (c.raw[0] - g.raw[0] * Z).abs().max();
  // The scaled maps agree up to the 1e-7 that min-max scaling adds to the maximum, which
  // weighs Z times more on Grad-CAM's smaller values (maxima ~1e-4 here).
  EXPECT_TRUE(torch::allclose(c.maps, g.maps, 0, 2e-3)) << (c.maps - g.maps).abs().max();
  // And the raw CAM is what its definition says: sum_k w_ck A_k.
  const auto A = cam->features(x).detach();
  const auto w = cam->net->fc->weight.detach();
  const auto expected = torch::einsum("bk,bkhw->bhw", {w.index_select(0, targets.select(1, 1)), A});
  EXPECT_TRUE(torch::allclose(c.raw[0].select(1, 1), expected, 1e-5, 1e-6));
}

TEST(Saliency, GradientsReachOnlyTheActivationAndParametersAreRestored) {
  auto cam = small_cam(12);
  cam->module().train();
  {
    auto model = am::classifier_saliency_model(cam, "cam");
    EXPECT_FALSE(cam->module().is_training());
    for (const auto& p : cam->module().parameters()) EXPECT_FALSE(p.requires_grad());
    am::compute_saliency(*model, torch::rand({2, 3, 16, 16}), torch::tensor({{1}, {2}}, torch::kInt64),
                         am::SaliencyOptions().method(SaliencyMethod::kGradCam).layers({"conv2", "conv3"}));
    for (const auto& p : cam->module().parameters()) EXPECT_FALSE(p.grad().defined());
  }
  EXPECT_TRUE(cam->module().is_training());
  for (const auto& p : cam->module().parameters()) EXPECT_TRUE(p.requires_grad());
}

TEST(Saliency, ScoreCamBatchesMatchOneMaskAtATime) {
  auto cam = small_cam(13);
  auto model = am::classifier_saliency_model(cam, "cam");
  const auto x = torch::rand({2, 3, 16, 16});
  const auto targets = torch::tensor({{2, 0}, {1, 3}}, torch::kInt64);
  const auto one = am::compute_saliency(
      *model, x, targets, am::SaliencyOptions().method(SaliencyMethod::kScoreCam).layers({"conv2"}).batch(1));
  const auto many = am::compute_saliency(
      *model, x, targets, am::SaliencyOptions().method(SaliencyMethod::kScoreCam).layers({"conv2"}).batch(4));
  EXPECT_TRUE(torch::allclose(one.raw[0], many.raw[0], 1e-5, 1e-6));
  // The definition, channel by channel.
  torch::NoGradGuard no_grad;
  cam->module().eval();
  const auto A = cam->net->stage(1, cam->net->stage(0, x));  // [2,6,8,8]
  for (std::int64_t b = 0; b < 2; ++b) {
    for (std::int64_t t = 0; t < 2; ++t) {
      const auto c = targets[b][t].item<std::int64_t>();
      std::vector<double> scores;
      for (std::int64_t k = 0; k < A.size(1); ++k) {
        auto up = torch::upsample_bilinear2d(A[b][k].unsqueeze(0).unsqueeze(0), {16, 16}, /*align_corners=*/true);
        up = (up - up.min()) / (up.max() - up.min() + 1e-8);
        scores.push_back(cam->logits(x[b].unsqueeze(0) * up)[0][c].item<double>());
      }
      const auto weights = torch::softmax(torch::tensor(scores, torch::kFloat64), 0).to(torch::kFloat32);
      const auto expected = torch::einsum("k,khw->hw", {weights, A[b]});
      EXPECT_TRUE(torch::allclose(many.raw[0][b][t], expected, 1e-4, 1e-5)) << "b=" << b << " t=" << t;
    }
  }
}

TEST(Saliency, EigenCamIsTheFirstPrincipalComponentWithAStableSign) {
  const auto A = random_in({2, 5, 4, 3}, 21, 0, 2).to(torch::kFloat32);
  const auto p = am::eigen_projection(A);
  ASSERT_EQ(p.sizes(), (std::vector<std::int64_t>{2, 4, 3}));
  for (std::int64_t b = 0; b < 2; ++b) {
    // The projection of the centred rows on the direction of largest variance.
    auto X = A[b].reshape({5, 12}).t().to(torch::kFloat64);
    X = X - X.mean(0, true);
    const auto cov = X.t().matmul(X);
    const auto eig = torch::linalg_eigh(cov);
    const auto v = std::get<1>(eig).select(1, 4);  // largest eigenvalue last
    auto expected = X.matmul(v);
    if (expected.max().item<double>() < -expected.min().item<double>()) expected = -expected;
    EXPECT_TRUE(torch::allclose(p[b].reshape({12}).to(torch::kFloat64), expected, 1e-4, 1e-5));
    EXPECT_GE(p[b].max().item<double>(), -p[b].min().item<double>());
  }
  // Flipping the sign of some channels, or of all, gives the same map.
  auto flipped = A.clone();
  flipped.select(1, 0).neg_();
  flipped.select(1, 3).neg_();
  EXPECT_TRUE(torch::allclose(am::eigen_projection(flipped), p, 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(am::eigen_projection(-A), p, 1e-4, 1e-5));
}

TEST(Saliency, PostProcessingIsReluMinMaxThenOpenCvBilinear) {
  const auto raw = random_in({2, 5, 7}, 31, -1, 2).to(torch::kFloat32);
  const auto out = am::postprocess_maps(raw, 40, 23);
  ASSERT_EQ(out.sizes(), (std::vector<std::int64_t>{2, 40, 23}));
  for (std::int64_t n = 0; n < 2; ++n) {
    auto m = torch::relu(raw[n]);
    m = m - m.min();
    m = m / (m.max() + 1e-7);
    m = m.contiguous();
    cv::Mat small(5, 7, CV_32FC1, m.data_ptr<float>());
    cv::Mat big;
    cv::resize(small, big, cv::Size(23, 40), 0, 0, cv::INTER_LINEAR);
    const auto expected = torch::from_blob(big.data, {40, 23}, torch::kFloat32);
    EXPECT_TRUE(torch::allclose(out[n], expected, 1e-5, 1e-5)) << (out[n] - expected).abs().max();
  }
  EXPECT_GE(out.min().item<float>(), 0.0f);
  EXPECT_LE(out.max().item<float>(), 1.0f);
}

TEST(Saliency, SeveralLayersAreFusedAsTheMeanOfTheirScaledMaps) {
  auto cam = small_cam(14);
  auto model = am::classifier_saliency_model(cam, "cam");
  const auto x = torch::rand({2, 3, 16, 16});
  const auto targets = torch::tensor({{1}, {3}}, torch::kInt64);
  auto opts = am::SaliencyOptions().method(SaliencyMethod::kGradCam);
  const auto a = am::compute_saliency(*model, x, targets, opts.layers({"conv1"}));
  const auto b = am::compute_saliency(*model, x, targets, opts.layers({"conv3"}));
  const auto both = am::compute_saliency(*model, x, targets, opts.layers({"conv1", "conv3"}));
  ASSERT_EQ(both.raw.size(), 2u);
  EXPECT_TRUE(torch::allclose(both.raw[0], a.raw[0], 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(both.raw[1], b.raw[0], 1e-5, 1e-6));
  const auto mean = ((a.maps + b.maps) / 2).flatten(0, 1);
  const auto expected = am::postprocess_maps(mean, 0, 0).view({2, 1, 16, 16});
  EXPECT_TRUE(torch::allclose(both.maps, expected, 1e-5, 1e-6));
}

TEST(Saliency, AugmentationSmoothingAveragesSixMapsFlippedBack) {
  auto cam = small_cam(15);
  auto model = am::classifier_saliency_model(cam, "cam");
  const auto x = torch::rand({1, 3, 16, 16});
  const auto targets = torch::tensor({{2}}, torch::kInt64);
  const auto opts = am::SaliencyOptions().method(SaliencyMethod::kGradCam);
  auto expected = torch::zeros({1, 1, 16, 16});
  for (const bool flip : {false, true}) {
    for (const double f : {0.9, 1.0, 1.1}) {
      auto in = x * f;
      if (flip) in = in.flip({3});
      auto m = am::compute_saliency(*model, in, targets, opts).maps;
      expected += flip ? m.flip({3}) : m;
    }
  }
  const auto smooth = am::compute_saliency(*model, x, targets, am::SaliencyOptions(opts).aug_smooth(true));
  EXPECT_TRUE(torch::allclose(smooth.maps, expected / 6, 1e-5, 1e-6));
}

TEST(Saliency, BadTargetsLayersAndMethodsAreNamed) {
  auto cam = small_cam(16);
  auto model = am::classifier_saliency_model(cam, "cam");
  const auto x = torch::rand({1, 3, 16, 16});
  auto message = [&](const torch::Tensor& targets, const am::SaliencyOptions& o) {
    try {
      am::compute_saliency(*model, x, targets, o);
    } catch (const c10::Error& e) {
      return std::string(e.what_without_backtrace());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(torch::tensor({{4}}, torch::kInt64), {}).find("class 4 is out of range (the model has 4 classes"),
            std::string::npos);
  EXPECT_NE(message(torch::tensor({{0}}, torch::kInt64), am::SaliencyOptions().layers({"conv9"}))
                .find("unknown layer 'conv9' (cam has conv1, conv2, conv3)"),
            std::string::npos);
  EXPECT_NE(message(torch::tensor({{0}}, torch::kInt64),
                    am::SaliencyOptions().method(SaliencyMethod::kCam).layers({"conv2"}))
                .find("cam needs a head that is global average pooling then a linear layer after 'conv2'"),
            std::string::npos);
  EXPECT_EQ(am::parse_enum<SaliencyMethod>("gradcam++"), SaliencyMethod::kGradCamPlusPlus);
  EXPECT_THROW(am::parse_enum<SaliencyMethod>("gradcam+++"), c10::Error);
}

TEST(CamClassifier, StagesComposeToTheLogitsAndTheHeadIsGapLinear) {
  auto cam = small_cam(17);
  cam->module().eval();
  torch::NoGradGuard no_grad;
  const auto x = torch::rand({2, 3, 16, 16});
  auto y = x;
  const auto stages = cam->stages();
  ASSERT_EQ(stages.size(), 4u);
  EXPECT_EQ(stages[0].name, "conv1");
  EXPECT_EQ(stages[3].name, "head");
  for (const auto& s : stages) y = s.run(y);
  EXPECT_TRUE(torch::allclose(y, cam->logits(x), 1e-5, 1e-6));
  const auto A = cam->features(x);
  EXPECT_EQ(A.sizes(), (std::vector<std::int64_t>{2, 5, 4, 4}));
  const auto by_hand = A.mean({2, 3}).matmul(cam->net->fc->weight.t()) + cam->net->fc->bias;
  EXPECT_TRUE(torch::allclose(cam->logits(x), by_hand, 1e-5, 1e-6));
  EXPECT_TRUE(cam->cam_weights("conv3").equal(cam->net->fc->weight));
  EXPECT_FALSE(cam->cam_weights("conv2").defined());
}

TEST(CamClassifier, MultiLabelLossIsTheMeanBinaryCrossEntropy) {
  auto cam = small_cam(18, /*multi=*/true);
  EXPECT_TRUE(cam->multi_label());
  cam->module().eval();
  const auto x = torch::rand({3, 3, 16, 16});
  const auto t = torch::tensor({{1, 0, 0, 1}, {0, 0, 0, 1}, {1, 1, 1, 0}}, torch::kFloat32);
  const auto loss = cam->loss(x, t);
  const auto z = cam->logits(x);
  const auto p = torch::sigmoid(z);
  const auto expected = -(t * torch::log(p) + (1 - t) * torch::log(1 - p)).mean();
  EXPECT_NEAR(loss.total.item<double>(), expected.item<double>(), 1e-5);
  const auto exact = ((z > 0).to(torch::kFloat32) == t).all(1).to(torch::kFloat64).mean().item<double>();
  EXPECT_DOUBLE_EQ(loss.metrics.at("accuracy"), exact);
  // Options round-trip through the registry, labels included.
  const auto& kind = am::model_registry().at("cam");
  EXPECT_TRUE(kind.capabilities.feature_map);
  auto rebuilt = am::make_classifier("cam", cam->options());
  EXPECT_EQ(rebuilt->options(), cam->options());
  EXPECT_TRUE(rebuilt->multi_label());
  EXPECT_THROW(am::CamNetOptions().filters({4, 4}).pools(2).validate(), c10::Error);
}

TEST(Saliency, WithoutTargetsTheTopClassesOfTheSamePassAreExplained) {
  auto cam = small_cam(19);
  auto model = am::classifier_saliency_model(cam, "cam");
  const auto x = torch::rand({3, 3, 16, 16});
  for (const auto method : {SaliencyMethod::kGradCam, SaliencyMethod::kScoreCam, SaliencyMethod::kEigenCam}) {
    const auto chosen = am::compute_saliency(*model, x, {}, am::SaliencyOptions().method(method).top_k(2));
    const auto top = am::top_classes(cam->logits(x).detach(), 2);
    ASSERT_TRUE(chosen.targets.equal(top)) << am::enum_name(method);
    const auto given = am::compute_saliency(*model, x, top, am::SaliencyOptions().method(method));
    EXPECT_TRUE(torch::allclose(chosen.maps, given.maps, 1e-5, 1e-6)) << am::enum_name(method);
  }
}
