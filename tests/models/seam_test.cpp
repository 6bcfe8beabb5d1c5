// SEAM: each loss piece against a hand computation, the losses' composition and where
// their gradients go, the transforms, multi-scale aggregation, pseudo-masks and mIoU.
#include <attend/models/registry.h>
#include <attend/datasets/object_scenes.h>
#include <attend/models/seam.h>
#include <attend/models/segmentation.h>
#include <attend/models/segmentation_metrics.h>

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

namespace am = attend::models;
namespace seam = attend::models::seam;

namespace {

/// A two-valued option of the seam kind: its second value `second` survives the
/// checkpoint's JSON, an absent key (options written before it) means the first, and
/// any other value is refused.
void expect_choice_round_trips(const std::string& key, const std::string& second,
                               const std::function<bool(const am::SeamOptions&)>& is_second) {
  auto options = am::complete_options(am::model_registry().at("seam"), {{key, second}}, am::InputShape{3, 32, 32});
  EXPECT_TRUE(is_second(am::SeamOptions::from_json(options))) << key;
  EXPECT_TRUE(is_second(am::SeamOptions::from_json(am::SeamOptions::from_json(options).to_json()))) << key;
  options.erase(key);
  EXPECT_FALSE(is_second(am::SeamOptions::from_json(options))) << key;
  options[key] = "neither";
  EXPECT_THROW(am::SeamOptions::from_json(options), c10::Error) << key;
}

am::SeamOptions tiny(std::int64_t classes = 3) {
  return am::SeamOptions()
      .channels(3)
      .height(16)
      .width(16)
      .classes(classes)
      .filters({4, 6, 8})
      .pools(1)
      .pcm_reduce({3, 5})
      .pcm_embed(6);
}

}  // namespace

TEST(Seam, MaxNormScalesEachChannelAfterReluAndMin) {
  // One image, two channels of 4 pixels.
  const auto p = torch::tensor({-1.0f, 0.5f, 1.0f, 2.0f, 3.0f, 3.0f, 1.0f, 2.0f}).view({1, 2, 2, 2});
  const auto n = seam::max_norm(p);
  // Channel 0: ReLU -> {0, .5, 1, 2}, min 0, max 2.
  const float e = 1e-5f;
  const auto c0 = torch::tensor({0.0f, (0.5f - e) / (2 + e), (1 - e) / (2 + e), (2 - e) / (2 + e)}).view({2, 2});
  // Channel 1: {3, 3, 1, 2}, min 1, max 3: (x - 1 - e) / (2 + e), clipped at 0.
  const auto c1 = torch::tensor({(2 - e) / (2 + e), (2 - e) / (2 + e), 0.0f, (1 - e) / (2 + e)}).view({2, 2});
  EXPECT_TRUE(torch::allclose(n[0][0], c0, 1e-6, 1e-7));
  EXPECT_TRUE(torch::allclose(n[0][1], c1, 1e-6, 1e-7));
}

TEST(Seam, PcmMapsKeepEachPixelsTopClassAndABackgroundOfOneMinusIt) {
  // Background channel (ignored and overwritten) and two classes over 3 pixels.
  const auto cam = torch::tensor({9.0f, 9.0f, 9.0f,  // background
                                  4.0f, 1.0f, -2.0f,  // class 1: max 4
                                  1.0f, 2.0f, 0.0f})  // class 2: max 2
                       .view({1, 3, 1, 3});
  const auto d = seam::pcm_maps(cam);
  const float e = 1e-5f;
  // Class 1 normalises to {a, (1-e)/(4+e), 0}, class 2 to {(1-e)/(2+e), f, 0}.
  const float a = (4 - e) / (4 + e), f = (2 - e) / (2 + e);
  // Pixel 0: class 1 (a) beats class 2 (~0.5); pixel 1: class 2 (f) beats ~0.25; pixel 2: none.
  const auto expected = torch::tensor({1 - a, 1 - f, 1.0f,  //
                                       a, 0.0f, 0.0f,       //
                                       0.0f, f, 0.0f})
                            .view({1, 3, 1, 3});
  EXPECT_TRUE(torch::allclose(d, expected, 1e-6, 1e-6)) << d;
}

TEST(Seam, TopMeanAndMinPoolingByHand) {
  const auto x = torch::tensor({{1.0f, 5.0f, 2.0f, 4.0f, 3.0f, 0.0f, 6.0f, 7.0f, 8.0f, 9.0f},
                                {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 10.0f}});
  // The top 20% of 10 entries: 2 per image -> (9 + 8 + 10 + 0.5) / 4.
  EXPECT_NEAR(seam::top_mean(x, 0.2).item<double>(), (9 + 8 + 10 + 0.5) / 4.0, 1e-6);
  // min-pooling: per pixel max over classes, the hw/4 smallest, ReLU, sum / (k n).
  const auto fg = torch::tensor({-1.0f, 0.2f, 0.3f, 0.9f, 0.1f, 0.4f, 0.0f, 0.8f,  // class 1
                                 -3.0f, 0.1f, 0.5f, 0.2f, 0.3f, 0.1f, 0.2f, 0.7f})  // class 2
                      .view({1, 2, 2, 4});
  // Per-pixel max: {-1, .2, .5, .9, .3, .4, .2, .8}; k = 2: {-1, .2} -> ReLU {0, .2}.
  EXPECT_NEAR(seam::min_pool_loss(fg).item<double>(), 0.2 / 2, 1e-6);
}

TEST(Seam, TransformsAndTheirInversesRoundTrip) {
  // A linear ramp resized with corners aligned stays the same ramp: 0..1 over 8 -> 4.
  const auto ramp = torch::linspace(0, 1, 8).view({1, 1, 1, 8}).expand({1, 1, 8, 8}).contiguous();
  const auto half = seam::transform(ramp, am::SeamTransform::kRescale, 0.5);
  ASSERT_EQ(half.sizes(), (std::vector<std::int64_t>{1, 1, 4, 4}));
  EXPECT_TRUE(torch::allclose(half[0][0][2], torch::linspace(0, 1, 4), 1e-6, 1e-6));
  // ...and back up (the inverse, corners aligned) gives the ramp again.
  const auto back = torch::nn::functional::interpolate(
      half, torch::nn::functional::InterpolateFuncOptions().size(std::vector<std::int64_t>{8, 8}).mode(torch::kBilinear).align_corners(true));
  EXPECT_TRUE(torch::allclose(back, ramp, 1e-6, 1e-6));
  // Flip is its own inverse and mirrors columns.
  const auto x = torch::arange(12, torch::kFloat32).view({1, 1, 3, 4});
  const auto flipped = seam::transform(x, am::SeamTransform::kFlip, 0.5);
  EXPECT_EQ(flipped[0][0][1][0].item<float>(), x[0][0][1][3].item<float>());
  EXPECT_TRUE(torch::equal(seam::transform(flipped, am::SeamTransform::kFlip, 0.5), x));
  // floor(s H) like the authors' scale_factor.
  EXPECT_EQ(seam::transform(torch::zeros({1, 1, 15, 9}), am::SeamTransform::kRescale, 0.3).sizes(),
            (std::vector<std::int64_t>{1, 1, 4, 2}));
  // Enlarging (a factor above 1) keeps the ramp too, on the finer grid, and shrinking
  // by the inverse factor gives it back.
  const auto up = seam::transform(half, am::SeamTransform::kRescale, 2.0);
  ASSERT_EQ(up.sizes(), (std::vector<std::int64_t>{1, 1, 8, 8}));
  EXPECT_TRUE(torch::allclose(up, ramp, 1e-6, 1e-6));
  EXPECT_EQ(seam::transform(torch::zeros({1, 1, 15, 9}), am::SeamTransform::kRescale, 1.5).sizes(),
            (std::vector<std::int64_t>{1, 1, 22, 13}));
  // The factor is checked: 1 would make the pair identical, and above 4 is refused.
  for (const double bad : {1.0, 0.0, 4.5}) EXPECT_THROW(tiny().scale(bad).validate(), c10::Error) << bad;
  EXPECT_NO_THROW(tiny().scale(1.5).validate());
}

TEST(Seam, LossesComposeAndTheirGradientsGoWhereTheAuthorsSendThem) {
  torch::manual_seed(4);
  am::SeamNet net(tiny());
  const auto images = torch::rand({2, 3, 16, 16});
  const auto labels = torch::tensor({{1.0f, 0.0f, 1.0f}, {0.0f, 1.0f, 0.0f}});
  const auto l = net->losses(images, labels);
  EXPECT_NEAR(l.total.item<double>(), (l.cls + l.min_pool + l.er + l.ecr).item<double>(), 1e-6);
  // One image at a time gives the same terms (the chunks only bound memory).
  const auto one = net->losses(images, labels, 1);
  for (const auto& [a, b] : {std::pair{l.min_pool, one.min_pool}, {l.er, one.er}, {l.ecr, one.ecr}}) {
    EXPECT_NEAR(a.item<double>(), b.item<double>(), 1e-6);
  }
  for (const auto& t : {l.cls, l.min_pool, l.er, l.ecr}) EXPECT_GT(t.item<double>(), 0.0);

  // The classification term by hand: BCE of the grid GAP of both branches.
  const auto o1 = net->forward(images);
  const auto o2 = net->forward(seam::transform(images, am::SeamTransform::kRescale, 0.5));
  EXPECT_EQ(o1.grid_cam.sizes(), (std::vector<std::int64_t>{2, 4, 8, 8}));
  EXPECT_EQ(o1.cam.sizes(), (std::vector<std::int64_t>{2, 4, 16, 16}));
  EXPECT_EQ(o2.cam_rv.sizes(), (std::vector<std::int64_t>{2, 4, 8, 8}));
  EXPECT_EQ(o1.affinity.sizes(), (std::vector<std::int64_t>{2, 64, 64}));
  double bce = 0;
  for (const auto* o : {&o1, &o2}) {
    const auto s = o->grid_cam.narrow(1, 1, 3).mean({2, 3});
    for (std::int64_t b = 0; b < 2; ++b) {
      for (std::int64_t c = 0; c < 3; ++c) {
        const double x = s[b][c].item<double>(), y = labels[b][c].item<double>();
        bce -= y * std::log(1 / (1 + std::exp(-x))) + (1 - y) * std::log(1 / (1 + std::exp(x)));
      }
    }
  }
  EXPECT_NEAR(l.cls.item<double>(), bce / 6 / 2, 1e-5);
  // L_er by hand: the labelled foreground of the rescaled, normalised branch-1 CAM
  // against branch 2's.
  const auto y = torch::cat({torch::ones({2, 1}), labels}, 1).view({2, 4, 1, 1});
  const auto c1 = seam::transform(seam::max_norm(o1.cam), am::SeamTransform::kRescale, 0.5) * y;
  const auto c2 = seam::max_norm(o2.cam) * y;
  EXPECT_NEAR(l.er.item<double>(), (c1 - c2).narrow(1, 1, 3).abs().sum().item<double>() / (2 * 3 * 64), 1e-6);

  // Switched off, a term is 0; without ECR and min-pooling the PCM is not even run.
  auto plain = tiny();
  plain.er(false).ecr(false).min_pool(false);
  EXPECT_FALSE(plain.pcm());
  am::SeamNet cam_only(plain);
  const auto l0 = cam_only->losses(images, labels);
  EXPECT_EQ(l0.er.item<double>(), 0.0);
  EXPECT_EQ(l0.ecr.item<double>(), 0.0);
  EXPECT_EQ(l0.min_pool.item<double>(), 0.0);
  EXPECT_FALSE(cam_only->forward(images, false).cam_rv.defined());

  // L_ecr trains only the PCM side (its inputs are detached): no backbone gradient.
  net->zero_grad();
  net->losses(images, labels).ecr.backward();
  for (const auto& p : net->named_parameters()) {
    const bool pcm_side = p.key().rfind("pcm", 0) == 0 || p.key().rfind("reduce", 0) == 0;
    const double g = p.value().grad().defined() ? p.value().grad().abs().sum().item<double>() : 0.0;
    if (pcm_side) {
      EXPECT_GT(g, 0.0) << p.key();
    } else {
      EXPECT_EQ(g, 0.0) << p.key();
    }
  }
  // L_er and L_cls reach the backbone and the CAM head, never the PCM.
  net->zero_grad();
  const auto l2 = net->losses(images, labels);
  (l2.er + l2.cls).backward();
  EXPECT_GT(net->classifier->weight.grad().abs().sum().item<double>(), 0.0);
  const auto pg = net->pcm->projection->weight.grad();
  EXPECT_TRUE(!pg.defined() || pg.abs().sum().item<double>() == 0.0);
}

TEST(Seam, ErWeightAndWarmUpScaleOnlyTheErTermOfTheTotal) {
  torch::manual_seed(4);
  am::SeamNet net(tiny().er_weight(0.5).er_warmup(4));
  const auto images = torch::rand({2, 3, 16, 16});
  const auto labels = torch::tensor({{1.0f, 0.0f, 1.0f}, {0.0f, 1.0f, 0.0f}});
  // Before any epoch is set, the full weight; then er_weight * min(1, epoch / 4).
  EXPECT_DOUBLE_EQ(net->er_factor(), 0.5);
  for (const auto& [epoch, factor] : {std::pair{0, 0.0}, {1, 0.125}, {3, 0.375}, {4, 0.5}, {9, 0.5}}) {
    net->set_epoch(epoch);
    EXPECT_DOUBLE_EQ(net->er_factor(), factor) << "epoch " << epoch;
    const auto l = net->losses(images, labels);
    EXPECT_GT(l.er.item<double>(), 0.0);  // reported unweighted
    EXPECT_NEAR(l.total.item<double>(), (l.cls + l.min_pool + factor * l.er + l.ecr).item<double>(), 1e-6);
  }
  EXPECT_THROW(net->set_epoch(-1), c10::Error);
  // The kind's options reach the net, survive the checkpoint's JSON, and are checked;
  // options written before them mean the authors' constant weight 1.
  auto options = am::complete_options(am::model_registry().at("seam"), {{"er_weight", 0.25}, {"er_warmup", 3}},
                                      am::InputShape{3, 32, 32});
  const auto parsed = am::SeamOptions::from_json(options);
  EXPECT_DOUBLE_EQ(parsed.er_weight(), 0.25);
  // The training engine's per-epoch call on the model kind reaches the net's ramp.
  am::SeamClassifier model(options);
  model.set_epoch(1, 12);
  EXPECT_DOUBLE_EQ(model.net->er_factor(), 0.25 / 3);
  model.set_epoch(5, 12);
  EXPECT_DOUBLE_EQ(model.net->er_factor(), 0.25);
  EXPECT_EQ(parsed.er_warmup(), 3);
  EXPECT_EQ(am::SeamOptions::from_json(parsed.to_json()).er_warmup(), 3);
  options.erase("er_weight");
  options.erase("er_warmup");
  EXPECT_DOUBLE_EQ(am::SeamOptions::from_json(options).er_weight(), 1.0);
  EXPECT_EQ(am::SeamOptions::from_json(options).er_warmup(), 0);
  for (const auto& [key, value] : {std::pair<const char*, nlohmann::json>{"er_weight", -1.0}, {"er_warmup", -2}}) {
    auto bad = parsed.to_json();
    bad[key] = value;
    EXPECT_THROW(am::SeamOptions::from_json(bad).validate(), c10::Error) << key;
  }
}

TEST(Seam, ErToTheCopyTrainsOnlyTheTransformedBranchAgainstAFixedTarget) {
  const auto images = torch::rand({2, 3, 16, 16}, torch::Generator(at::detail::createCPUGenerator(5)));
  const auto labels = torch::tensor({{1.0f, 0.0f, 1.0f}, {0.0f, 1.0f, 0.0f}});
  const auto y = torch::cat({torch::ones({2, 1}), labels}, 1).view({2, 4, 1, 1});
  // The same weights three times: the authors' L_er, the copy-only one, and a hand
  // computation with branch 1's transformed CAM detached.
  auto er_grads = [&](bool to_copy, bool by_hand) {
    torch::manual_seed(4);
    am::SeamNet net(tiny().er_to_copy(to_copy));
    torch::Tensor er;
    if (by_hand) {
      const auto o1 = net->forward(images, /*revise=*/false);
      const auto o2 = net->forward(seam::transform(images, am::SeamTransform::kRescale, 0.5), false);
      const auto c1 = (seam::transform(seam::max_norm(o1.cam), am::SeamTransform::kRescale, 0.5) * y).detach();
      const auto c2 = seam::max_norm(o2.cam) * y;
      er = (c1 - c2).narrow(1, 1, 3).abs().mean();
    } else {
      er = net->losses(images, labels).er;
    }
    net->zero_grad();
    er.backward();
    std::vector<torch::Tensor> grads;
    for (const auto& p : net->parameters()) {
      if (p.grad().defined()) grads.push_back(p.grad().flatten().clone());
    }
    return std::pair{er.item<double>(), torch::cat(grads)};
  };
  const auto [both, g_both] = er_grads(false, false);
  const auto [copy, g_copy] = er_grads(true, false);
  const auto [hand, g_hand] = er_grads(true, true);
  // The value is the authors' L_er either way; only where its gradient goes changes.
  EXPECT_NEAR(copy, both, 1e-7);
  EXPECT_NEAR(copy, hand, 1e-6);
  EXPECT_TRUE(torch::allclose(g_copy, g_hand, 1e-4, 1e-7)) << (g_copy - g_hand).abs().max().item<double>();
  EXPECT_GT((g_copy - g_both).abs().max().item<double>(), 1e-4);
  // The option survives the checkpoint's JSON; options written before it mean both.
  expect_choice_round_trips("er_gradient", "copy", [](const am::SeamOptions& o) { return o.er_to_copy(); });
}

// L_ecr by hand, with the authors' cross-branch targets and with each branch's own.
TEST(Seam, EcrPullsEachRevisedCamTowardsTheOtherBranchsRawCamOrItsOwn) {
  const auto images = torch::rand({2, 3, 16, 16}, torch::Generator(at::detail::createCPUGenerator(6)));
  const auto labels = torch::tensor({{1.0f, 0.0f, 1.0f}, {0.0f, 1.0f, 1.0f}});
  const auto y = torch::cat({torch::ones({2, 1}), labels}, 1).view({2, 4, 1, 1});
  auto ecr = [&](bool own) {
    torch::manual_seed(4);
    am::SeamNet net(tiny().ecr_own(own));
    const auto value = net->losses(images, labels).ecr.item<double>();
    const auto o1 = net->forward(images);
    const auto o2 = net->forward(seam::transform(images, am::SeamTransform::kRescale, 0.5));
    auto t = [](const torch::Tensor& x) { return seam::transform(x, am::SeamTransform::kRescale, 0.5); };
    const auto c1 = t(seam::max_norm(o1.cam)) * y, c2 = seam::max_norm(o2.cam) * y;
    const auto r1 = t(seam::max_norm(o1.cam_rv)) * y, r2 = seam::max_norm(o2.cam_rv) * y;
    auto target = [](const torch::Tensor& c) { return seam::max_onehot(seam::with_background(c)); };
    // The mean of the largest 20% of each image's (K+1) h w = 4 x 8 x 8 entries (51).
    auto top = [](const torch::Tensor& d) {
      double sum = 0;
      for (std::int64_t b = 0; b < d.size(0); ++b) sum += std::get<0>(d[b].flatten().topk(51)).mean().item<double>();
      return sum / static_cast<double>(d.size(0));
    };
    const double hand = own ? top((target(c1) - r1).abs()) + top((target(c2) - r2).abs())
                            : top((target(c2) - r1).abs()) + top((target(c1) - r2).abs());
    return std::pair{value, hand};
  };
  const auto [other, other_hand] = ecr(false);
  const auto [own, own_hand] = ecr(true);
  EXPECT_NEAR(other, other_hand, 1e-5);
  EXPECT_NEAR(own, own_hand, 1e-5);
  EXPECT_GT(std::abs(own - other), 1e-4);  // the targets differ
  // The option survives the checkpoint's JSON; options written before it mean the authors'.
  expect_choice_round_trips("ecr_target", "own", [](const am::SeamOptions& o) { return o.ecr_own(); });
  // Without L_ecr there are no targets to pick.
  EXPECT_THROW(am::SeamNet(tiny().ecr(false).ecr_own(true)), c10::Error);
}

TEST(Seam, FrozenBatchNormKeepsItsStatisticsAndAffineAndNormalisesTrainingLikeEvaluation) {
  torch::manual_seed(8);
  am::SeamNet net(tiny().frozen_bn(true));
  // Statistics as a trained backbone would bring them (--init-from).
  std::vector<torch::nn::BatchNorm2dImpl*> norms;
  for (auto& m : net->modules(/*include_self=*/false)) {
    if (auto* bn = m->as<torch::nn::BatchNorm2d>()) norms.push_back(bn);
  }
  ASSERT_EQ(norms.size(), tiny().filters().size());
  {
    torch::NoGradGuard no_grad;
    for (auto* bn : norms) {
      bn->running_mean.uniform_(-0.2, 0.2);
      bn->running_var.uniform_(0.5, 2.0);
    }
  }
  const auto images = torch::rand({2, 3, 16, 16});
  const auto labels = torch::tensor({{1.0f, 0.0f, 1.0f}, {0.0f, 1.0f, 0.0f}});
  net->train();
  for (auto* bn : norms) {
    EXPECT_FALSE(bn->is_training());
    EXPECT_FALSE(bn->weight.requires_grad());
    EXPECT_FALSE(bn->bias.requires_grad());
  }
  std::vector<torch::Tensor> before;
  for (const auto& p : net->parameters()) before.push_back(p.clone());
  for (const auto& b : net->buffers()) before.push_back(b.clone());
  // In training the maps are those of evaluation: the running statistics normalise both.
  const auto training_map = net->forward(images, false).grid_cam;
  net->eval();
  EXPECT_TRUE(torch::allclose(training_map, net->forward(images, false).grid_cam, 1e-6, 1e-6));
  net->train();
  torch::optim::SGD sgd(net->parameters(), 0.5);
  sgd.zero_grad();
  net->losses(images, labels).total.backward();
  sgd.step();
  std::size_t i = 0, changed = 0;
  for (const auto& p : net->named_parameters()) {
    const bool moved = !torch::equal(p.value(), before[i++]);
    const bool norm = std::any_of(norms.begin(), norms.end(), [&](const auto* bn) {
      return p.value().is_same(bn->weight) || p.value().is_same(bn->bias);
    });
    if (norm) {
      EXPECT_FALSE(moved) << p.key();
    }
    changed += moved ? 1 : 0;
  }
  EXPECT_GT(changed, 3u);  // the convolutions, the head and the PCM's layers do learn
  for (const auto& b : net->buffers()) EXPECT_TRUE(torch::equal(b, before[i++])) << "a batch-norm buffer moved";
  // Trained batch norm (the default) does update its statistics in training.
  am::SeamNet trained(tiny());
  torch::Tensor running;
  for (auto& m : trained->modules(/*include_self=*/false)) {
    if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
      running = bn->running_mean;
      break;
    }
  }
  const auto start = running.clone();
  trained->train();
  trained->forward(images, false);
  EXPECT_FALSE(torch::equal(start, running));
  // The option survives the checkpoint's JSON; options written before it mean trained.
  EXPECT_TRUE(am::SeamOptions::from_json(tiny().frozen_bn(true).to_json()).frozen_bn());
  auto old = tiny().to_json();
  old.erase("batch_norm");
  EXPECT_FALSE(am::SeamOptions::from_json(old).frozen_bn());
  old["batch_norm"] = "thawed";
  EXPECT_THROW(am::SeamOptions::from_json(old), c10::Error);
}

TEST(Seam, MultiScaleAggregationIsTheSumOfTheSinglePasses) {
  // A pass with position-dependent output, so flips and scales matter.
  torch::manual_seed(5);
  const auto weight = torch::randn({2, 3, 3, 3});
  const am::CamPass pass = [&](const torch::Tensor& x) { return torch::conv2d(x, weight, {}, 1, 1); };
  const auto images = torch::rand({1, 3, 12, 12});
  const auto labels = torch::tensor({{1.0f, 1.0f}});
  const auto all = am::aggregate_cams(pass, images, labels, am::CamInference().normalise(false));
  torch::Tensor sum = torch::zeros_like(all);
  for (const double s : {0.5, 1.0, 1.5, 2.0}) {
    sum += am::aggregate_cams(pass, images, labels, am::CamInference().scales({s}).flip(true).normalise(false));
  }
  EXPECT_TRUE(torch::allclose(all, sum, 1e-5, 1e-5));
  // The identity pass at scale 1 without flip: the maps themselves.
  const auto one = am::aggregate_cams(pass, images, labels, am::CamInference().scales({1.0}).flip(false).normalise(false));
  EXPECT_TRUE(torch::allclose(one, pass(images), 1e-6, 1e-6));
  // A flipped pass is flipped back: for a mirror-symmetric pass, flip doubles the map.
  const am::CamPass symmetric = [](const torch::Tensor& x) { return x.narrow(1, 0, 2) + x.narrow(1, 0, 2).flip(3); };
  const auto doubled =
      am::aggregate_cams(symmetric, images, labels, am::CamInference().scales({1.0}).flip(true).normalise(false));
  EXPECT_TRUE(torch::allclose(doubled, 2 * symmetric(images), 1e-6, 1e-6));
  // Normalised: labels mask classes out, each kept class spans [0, 1).
  const auto masked = am::aggregate_cams(pass, images, torch::tensor({{0.0f, 1.0f}}));
  EXPECT_EQ(masked[0][0].abs().max().item<float>(), 0.0f);
  EXPECT_NEAR(masked[0][1].max().item<float>(), 1.0f, 1e-4);
  EXPECT_EQ(masked[0][1].min().item<float>(), 0.0f);
}

TEST(Seam, PseudoMasksAndMeanIoUByHand) {
  // Two classes over a 2x3 image; alpha 0.3.
  const auto cams = torch::tensor({0.9f, 0.2f, 0.1f, 0.0f, 0.5f, 0.25f,  // class 1
                                   0.1f, 0.4f, 0.2f, 0.8f, 0.6f, 0.3f})  // class 2
                        .view({1, 2, 2, 3});
  const auto masks = am::pseudo_masks(cams, 0.3);
  EXPECT_TRUE(torch::equal(masks[0], torch::tensor({{1, 2, 0}, {2, 2, 0}}, torch::kInt64))) << masks;
  EXPECT_THROW(am::pseudo_masks(cams, 1.5), c10::Error);

  am::SegmentationScores scores(3);
  const auto truth = torch::tensor({{1, 2, 255}, {0, 2, 0}}, torch::kUInt8);
  scores.add(masks[0], truth);
  // Counted pixels (255 ignored): (1,1) (2,2) (0,2) (2,2) (0,0).
  // Background: TP 1, FP 0, FN 1 -> 1/2; class 1: 1/1; class 2: TP 2, FP 1 -> 2/3.
  const auto iou = scores.iou();
  EXPECT_NEAR(iou[0], 0.5, 1e-12);
  EXPECT_NEAR(iou[1], 1.0, 1e-12);
  EXPECT_NEAR(iou[2], 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(scores.mean_iou(), (0.5 + 1.0 + 2.0 / 3.0) / 3, 1e-12);
  EXPECT_NEAR(scores.precision()[2], 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(scores.recall()[0], 0.5, 1e-12);
  EXPECT_NEAR(scores.pixel_accuracy(), 4.0 / 5.0, 1e-12);
  // Where the wrong pixels went: no object pixel is lost; one of the two background
  // pixels is labelled class 2.
  EXPECT_EQ(scores.object_as_background(), 0.0);
  EXPECT_EQ(scores.object_as_other_object(), 0.0);
  EXPECT_NEAR(scores.background_as_object(), 0.5, 1e-12);
  am::SegmentationScores swapped(3);
  EXPECT_TRUE(std::isnan(swapped.object_as_background())) << "no pixels yet";
  swapped.add(torch::tensor({{0, 1, 0, 2}}, torch::kInt64), torch::tensor({{1, 2, 0, 2}}, torch::kUInt8));
  EXPECT_NEAR(swapped.object_as_background(), 1.0 / 3.0, 1e-12);    // 1 -> background
  EXPECT_NEAR(swapped.object_as_other_object(), 1.0 / 3.0, 1e-12);  // 2 -> 1
  EXPECT_EQ(swapped.background_as_object(), 0.0);
  // A class in neither truth nor prediction has no IoU and leaves the mean alone.
  am::SegmentationScores wide(4);
  wide.add(masks[0], truth);
  EXPECT_TRUE(std::isnan(wide.iou()[3]));
  EXPECT_NEAR(wide.mean_iou(), scores.mean_iou(), 1e-12);
  try {
    scores.add(masks[0], torch::tensor({{1, 7, 0}, {0, 0, 0}}, torch::kUInt8));
    ADD_FAILURE() << "a label outside the classes was accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("true label 7 is outside 0..2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(scores.add(masks[0], torch::zeros({3, 2}, torch::kUInt8)), c10::Error);
}

TEST(Seam, KindIsMultiLabelWithCamStagesAndRefusesBadOptions) {
  const auto& kind = am::model_registry().at("seam");
  EXPECT_TRUE(kind.capabilities.multi_label_only);
  auto options = am::complete_options(kind, nlohmann::json::object(), am::InputShape{3, 32, 32});
  options["filters"] = {4, 6, 8};
  options["pools"] = 1;
  torch::manual_seed(6);
  auto model = am::make_model("seam", options);
  auto& seam_model = dynamic_cast<am::SeamClassifier&>(*model);
  const auto images = torch::rand({2, 3, 32, 32});
  seam_model.module().eval();
  // The head is GAP then the CAM head's foreground weights: CAM's identity holds.
  const auto map = [&] {
    auto x = images;
    for (std::size_t i = 0; i < 3; ++i) x = seam_model.net->stage(i, x);
    return x;
  }();
  const auto w = seam_model.cam_weights("conv3");
  ASSERT_EQ(w.sizes(), (std::vector<std::int64_t>{10, 8}));
  EXPECT_TRUE(torch::allclose(seam_model.logits(images), map.mean({2, 3}).matmul(w.t()), 1e-5, 1e-6));
  EXPECT_FALSE(seam_model.cam_weights("conv2").defined());
  EXPECT_EQ(seam_model.stages().size(), 4u);
  auto bad = options;
  bad["pools"] = 2;  // the last two blocks would not share the stride
  EXPECT_THROW(am::make_model("seam", bad), c10::Error);
  bad = options;
  bad["er"] = "maybe";
  EXPECT_THROW(am::make_model("seam", bad), c10::Error);
}

namespace {

/// Bright blocks of varying size as 28x28 items, labels i % 10.
attend::datasets::Digits seam_blocks(std::int64_t n, std::int64_t salt) {
  auto images = torch::zeros({n, 28, 28}, torch::kUInt8);
  for (std::int64_t i = 0; i < n; ++i) {
    const auto side = 10 + (i + salt) % 8;
    images[i].narrow(0, 4 + i % 4, side).narrow(1, 3 + (i + salt) % 5, side).fill_(static_cast<std::uint8_t>(150 + i % 100));
  }
  return {images, torch::arange(n, torch::kInt64) % 10};
}

/// The equivariance error of a net's raw CAMs after `steps` Adam steps on scenes.
double equivariance_after_training(am::SeamOptions options, int steps) {
  namespace ds = attend::datasets;
  const auto generator = std::make_shared<const ds::ObjectSceneGenerator>(
      ds::ObjectSceneOptions().canvas(32).objects_min(1).objects_max(2), 5,
      std::vector<ds::Digits>{seam_blocks(100, 0)}, std::vector<ds::Digits>{seam_blocks(40, 3)});
  const ds::ObjectLabelSource train(generator, ds::ObjectSplit::kTrain, 64, false);
  const ds::ObjectLabelSource test(generator, ds::ObjectSplit::kTest, 16, false);
  torch::manual_seed(8);
  am::SeamNet net(options);
  torch::optim::Adam adam(net->parameters(), torch::optim::AdamOptions(3e-3));
  for (int s = 0; s < steps; ++s) {
    std::vector<std::int64_t> indices;
    for (std::int64_t i = 0; i < 16; ++i) indices.push_back((s * 16 + i) % train.size());
    const auto batch = train.get(indices, 0);
    adam.zero_grad();
    net->losses(batch.images, batch.labels).total.backward();
    adam.step();
  }
  net->eval();
  torch::NoGradGuard no_grad;
  std::vector<std::int64_t> all(16);
  std::iota(all.begin(), all.end(), 0);
  const auto batch = test.get(all, 0);
  const am::CamPass pass = [&](const torch::Tensor& x) { return net->forward(x, false).cam.narrow(1, 1, 10); };
  const auto [diff, mass] =
      am::equivariance_sums(pass, batch.images, batch.labels, options.transform(), options.scale());
  return diff / mass;
}

}  // namespace

// A short run: the equivariant regularisation makes the CAMs of a rescaled scene
// closer to the rescaled CAMs than classification alone does.
TEST(Seam, ShortTrainingLeavesSeamMoreEquivariantThanCam) {
  auto base = am::SeamOptions().channels(1).height(32).width(32).classes(10).filters({8, 12, 16}).pools(1)
                  .pcm_reduce({4, 4}).pcm_embed(8);
  auto cam = base;
  cam.er(false).ecr(false).min_pool(false);
  const double seam_error = equivariance_after_training(base, 30);
  const double cam_error = equivariance_after_training(cam, 30);
  EXPECT_LT(seam_error, cam_error) << "SEAM " << seam_error << ", CAM " << cam_error;
}

// The fully supervised upper bound: cross-entropy of the resized CAMs against the
// masks, 255 ignored, plus the classification term.
TEST(Seam, PixelSupervisionIsTheCrossEntropyOfTheCamsAgainstTheMasks) {
  torch::manual_seed(9);
  auto options = tiny();
  options.pixel_supervision(true);
  EXPECT_FALSE(options.pcm());
  am::SeamNet net(options);
  const auto images = torch::rand({2, 3, 16, 16});
  const auto labels = torch::tensor({{1.0f, 0.0f, 1.0f}, {0.0f, 1.0f, 0.0f}});
  auto masks = torch::randint(0, 4, {2, 16, 16}, torch::kInt64);
  masks[0][3].fill_(255);
  const auto l = net->pixel_losses(images, labels, masks, 1);
  const auto logp = torch::log_softmax(net->forward(images, false).cam, 1);
  double sum = 0;
  std::int64_t n = 0;
  for (std::int64_t b = 0; b < 2; ++b) {
    for (std::int64_t y = 0; y < 16; ++y) {
      for (std::int64_t x = 0; x < 16; ++x) {
        const auto t = masks[b][y][x].item<std::int64_t>();
        if (t == 255) continue;
        sum -= logp[b][t][y][x].item<double>();
        ++n;
      }
    }
  }
  EXPECT_EQ(n, 2 * 256 - 16);
  EXPECT_NEAR(l.pixel.item<double>(), sum / static_cast<double>(n), 1e-5);
  EXPECT_NEAR(l.total.item<double>(), (l.pixel + l.cls).item<double>(), 1e-6);
  EXPECT_THROW(net->pixel_losses(images, labels, torch::full({2, 16, 16}, 7, torch::kInt64)), c10::Error);

  // As a model kind, its training loss needs the batch's masks.
  const auto& kind = am::model_registry().at("seam");
  auto json = am::complete_options(kind, nlohmann::json{{"supervision", "pixel"}}, am::InputShape{3, 16, 16});
  json["filters"] = {4, 6, 8};
  json["pools"] = 1;
  json["classes"] = 3;
  auto model = am::make_model("seam", json);
  auto& classifier = dynamic_cast<am::Classifier&>(*model);
  attend::datasets::LabelledBatch batch{images, labels, {}};
  EXPECT_THROW(classifier.loss(batch), c10::Error);
  batch.masks = masks;
  const auto trained = classifier.loss(batch);
  EXPECT_EQ(trained.metrics.count("pixel"), 1u);
  EXPECT_GT(trained.total.item<double>(), 0.0);
}

// The upper bound is scored by its own argmax over background and the image's
// classes (probabilities summed over the passes), not by CAMs against alpha.
TEST(Seam, PixelSupervisedModelsSegmentByTheirOwnArgmax) {
  namespace ds = attend::datasets;
  // By hand: 3 pixels, background + 2 classes; class 2 absent from the image.
  const auto sums = torch::tensor({0.5f, 0.2f, 0.3f,    // background
                                   0.4f, 0.7f, 0.1f,    // class 1
                                   0.1f, 0.1f, 0.6f})   // class 2 (absent: never chosen)
                        .view({1, 3, 1, 3});
  const auto masks = am::argmax_masks(sums, torch::tensor({{1.0f, 0.0f}}));
  EXPECT_TRUE(torch::equal(masks, torch::tensor({0, 1, 0}, torch::kInt64).view({1, 1, 3})));
  EXPECT_TRUE(torch::equal(am::argmax_masks(sums, torch::tensor({{1.0f, 1.0f}})),
                           torch::tensor({0, 1, 2}, torch::kInt64).view({1, 1, 3})));
  EXPECT_THROW(am::argmax_masks(sums, torch::ones({1, 3})), c10::Error);

  const auto generator = std::make_shared<const ds::ObjectSceneGenerator>(
      ds::ObjectSceneOptions().canvas(32).objects_min(1).objects_max(2), 5,
      std::vector<ds::Digits>{seam_blocks(100, 0)}, std::vector<ds::Digits>{seam_blocks(40, 3)});
  const ds::ObjectLabelSource test(generator, ds::ObjectSplit::kTest, 6, false);
  auto json = am::complete_options(am::model_registry().at("seam"), nlohmann::json{{"supervision", "pixel"}},
                                   am::InputShape{1, 32, 32});
  json["filters"] = {4, 6, 8};
  json["pools"] = 1;
  json["classes"] = 10;
  torch::manual_seed(4);
  auto built = am::make_model("seam", json);
  auto& model = dynamic_cast<am::Classifier&>(*built);
  ASSERT_TRUE(am::segments_by_argmax(model));
  const auto inference = am::CamInference().scales({1.0}).flip(false);
  const auto report = am::evaluate_segmentation(model, nullptr, test, am::SegmentationEvalOptions().inference(inference));
  EXPECT_TRUE(report.by_argmax);
  EXPECT_TRUE(report.alphas.empty());
  EXPECT_TRUE(std::isnan(report.alpha));

  // The same by hand: one pass, softmax over the K+1 maps, argmax among the classes present.
  std::vector<std::int64_t> all(6);
  std::iota(all.begin(), all.end(), 0);
  const auto batch = test.get(all, 0);
  auto& net = *dynamic_cast<am::SeamClassifier&>(model).net;
  torch::Tensor probabilities;
  {
    torch::NoGradGuard no_grad;
    probabilities = torch::softmax(net.forward(batch.images, false).cam, 1);
  }
  EXPECT_TRUE(torch::allclose(probabilities.sum(1), torch::ones({6, 32, 32}), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(am::probability_pass(model)(batch.images), probabilities));
  const auto present = torch::cat({torch::ones({6, 1}), batch.labels.to(torch::kFloat32)}, 1).view({6, 11, 1, 1});
  const auto expected = torch::where(present > 0, probabilities, torch::full({}, -1.0f)).argmax(1);
  am::SegmentationScores manual(11);
  std::vector<torch::Tensor> truths;
  for (auto i : all) truths.push_back(test.scene(i).labels);
  manual.add(expected, torch::stack(truths));
  EXPECT_TRUE(torch::equal(report.test.confusion(), manual.confusion()));
  // Not a constant answer: the untrained net already labels pixels with several classes.
  EXPECT_GE((manual.confusion().sum(0) > 0).sum().item<std::int64_t>(), 3) << manual.confusion();

  // A model trained on image labels has no such scores.
  auto image_json = json;
  image_json["supervision"] = "image";
  auto image_model = am::make_model("seam", image_json);
  EXPECT_FALSE(am::segments_by_argmax(dynamic_cast<am::Classifier&>(*image_model)));
  EXPECT_THROW(am::probability_pass(dynamic_cast<am::Classifier&>(*image_model)), c10::Error);
}

// `--cams raw|revised`: a pass over the CAM head's maps or the PCM's, what each model
// lacks refused, and the stage chosen is the one scored.
TEST(Seam, CamPassesGiveTheRawOrRevisedMapsAndRefuseWhatAModelLacks) {
  namespace ds = attend::datasets;
  auto options = am::complete_options(am::model_registry().at("seam"), nlohmann::json::object(),
                                      am::InputShape{1, 32, 32});
  options["filters"] = {4, 6, 8};
  options["pools"] = 1;
  torch::manual_seed(9);
  auto built = am::make_model("seam", options);
  auto& model = dynamic_cast<am::Classifier&>(*built);
  auto& net = *dynamic_cast<am::SeamClassifier&>(model).net;
  const auto images = torch::rand({2, 1, 32, 32});
  model.module().eval();
  torch::Tensor raw, revised;
  {
    torch::NoGradGuard no_grad;
    raw = net.forward(images, false).cam.narrow(1, 1, 10);
    revised = net.forward(images, true).cam_rv.narrow(1, 1, 10);
  }
  ASSERT_FALSE(torch::allclose(raw, revised, 1e-3, 1e-3));  // the two stages differ
  EXPECT_EQ(am::resolve_cam_stage(model, am::CamStage::kModel), am::CamStage::kRevised);
  EXPECT_TRUE(torch::equal(am::cam_pass(model, am::CamStage::kRaw)(images), raw));
  EXPECT_TRUE(torch::equal(am::cam_pass(model, am::CamStage::kRevised)(images), revised));
  EXPECT_TRUE(torch::equal(am::cam_pass(model)(images), revised));

  // ER only: the PCM keeps its initial weights, so there are no revised maps to give.
  auto er_only = options;
  er_only["ecr"] = "off";
  er_only["min_pool"] = "off";
  auto er_built = am::make_model("seam", er_only);
  auto& er_model = dynamic_cast<am::Classifier&>(*er_built);
  EXPECT_EQ(am::resolve_cam_stage(er_model, am::CamStage::kModel), am::CamStage::kRaw);
  EXPECT_THROW(am::cam_pass(er_model, am::CamStage::kRevised), c10::Error);
  EXPECT_EQ(am::resolve_cam_stage(er_model, am::CamStage::kRaw), am::CamStage::kRaw);
  auto cam_options = am::complete_options(am::model_registry().at("cam"), nlohmann::json{{"labels", "multi"}},
                                          am::InputShape{1, 32, 32});
  auto cam_built = am::make_model("cam", cam_options);
  auto& cam_model = dynamic_cast<am::Classifier&>(*cam_built);
  EXPECT_EQ(am::resolve_cam_stage(cam_model, am::CamStage::kModel), am::CamStage::kRaw);
  EXPECT_THROW(am::resolve_cam_stage(cam_model, am::CamStage::kRevised), c10::Error);
  EXPECT_STREQ(am::cam_stage_name(am::CamStage::kRaw), "raw");
  EXPECT_STREQ(am::cam_stage_name(am::CamStage::kRevised), "revised");

  // The stage asked for is the one scored: the equivariance error of the raw maps.
  const auto generator = std::make_shared<const ds::ObjectSceneGenerator>(
      ds::ObjectSceneOptions().canvas(32).objects_min(1).objects_max(2), 5,
      std::vector<ds::Digits>{seam_blocks(100, 0)}, std::vector<ds::Digits>{seam_blocks(40, 3)});
  const ds::ObjectLabelSource test(generator, ds::ObjectSplit::kTest, 4, false);
  const auto eval = am::SegmentationEvalOptions().inference(am::CamInference().scales({1.0}).flip(false)).alpha(0.3);
  const auto raw_report = am::evaluate_segmentation(model, nullptr, test, am::SegmentationEvalOptions(eval).stage(am::CamStage::kRaw));
  const auto model_report = am::evaluate_segmentation(model, nullptr, test, eval);
  EXPECT_EQ(raw_report.stage, am::CamStage::kRaw);
  EXPECT_EQ(model_report.stage, am::CamStage::kRevised);
  const auto batch = test.get({0, 1, 2, 3}, 0);
  for (const auto& [report, stage] : {std::pair{&raw_report, am::CamStage::kRaw},
                                      std::pair{&model_report, am::CamStage::kRevised}}) {
    const auto [diff, mass] = am::equivariance_sums(am::cam_pass(model, stage), batch.images,
                                                    batch.labels.to(torch::kFloat32), net.options.transform(),
                                                    net.options.scale());
    EXPECT_NEAR(report->equivariance_error, diff / mass, 1e-6) << am::cam_stage_name(stage);
  }
  EXPECT_NE(raw_report.equivariance_error, model_report.equivariance_error);
  EXPECT_THROW(am::evaluate_segmentation(er_model, nullptr, test, am::SegmentationEvalOptions(eval).stage(am::CamStage::kRevised)),
               c10::Error);
}
