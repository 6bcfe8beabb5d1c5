#include <attend/attention/hard.h>
#include <attend/models/ram.h>

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <cmath>
#include <set>

namespace am = attend::models;
namespace aa = attend::attention;

namespace {

am::Ram tiny_ram(const std::string& core = "rnn") {
  return am::Ram(am::RamOptions()
                     .glimpses(4)
                     .glimpse_size(4)
                     .scales(2)
                     .what_size(8)
                     .where_size(8)
                     .glimpse_features(16)
                     .hidden(12)
                     .classes(3)
                     .core(am::parse_enum<am::RamCore>(core)));
}

/// Names of parameters whose gradient is non-zero after backward(term).
std::set<std::string> touched(am::Ram& ram, const torch::Tensor& term) {
  ram->zero_grad();
  term.backward(torch::Tensor(), /*retain_graph=*/true);
  std::set<std::string> names;
  for (const auto& p : ram->named_parameters()) {
    if (p.value().grad().defined() && p.value().grad().abs().sum().item<double>() > 0) {
      names.insert(p.key().substr(0, p.key().find('.')));
    }
  }
  return names;
}

}  // namespace

class RamGradients : public ::testing::TestWithParam<std::string> {};

TEST_P(RamGradients, EachLossTermReachesOnlyItsOwnNetworks) {
  torch::manual_seed(3);
  auto ram = tiny_ram(GetParam());
  const auto images = torch::rand({16, 1, 20, 20});
  const auto targets = torch::randint(0, 3, {16});
  const auto out = ram->forward(images, /*sample=*/true);
  // Mixed rewards so the advantage is not zero everywhere.
  auto loss = am::ram_loss(out, targets);
  ASSERT_GT(loss.reward.sum().item<double>(), 0.0);
  ASSERT_LT(loss.reward.sum().item<double>(), 16.0);

  EXPECT_EQ(touched(ram, loss.reinforce), (std::set<std::string>{"location_net"}));
  EXPECT_EQ(touched(ram, loss.baseline), (std::set<std::string>{"baseline_net"}));
  const auto core = GetParam() == "lstm" ? std::set<std::string>{"lstm"}
                                         : std::set<std::string>{"core_input", "core_hidden"};
  std::set<std::string> nll{"classifier", "what", "where", "what_out", "where_out"};
  nll.insert(core.begin(), core.end());
  EXPECT_EQ(touched(ram, loss.classification), nll);
  EXPECT_FALSE(out.locations.requires_grad()) << "no gradient may flow through a sampled location";
}

INSTANTIATE_TEST_SUITE_P(Cores, RamGradients, ::testing::Values("rnn", "lstm"));

TEST(Ram, ReinforceTermIsMinusAdvantageWeightedLogProbability) {
  torch::manual_seed(5);
  auto ram = tiny_ram();
  const auto out = ram->forward(torch::rand({6, 1, 20, 20}), true);
  const auto targets = torch::randint(0, 3, {6});
  const auto loss = am::ram_loss(out, targets, 0.5);
  const auto reward = (out.log_probs.argmax(1) == targets).to(torch::kFloat32);
  double expected = 0;
  for (int b = 0; b < 6; ++b) {
    for (int t = 0; t < 3; ++t) {
      expected -= out.policy_log_probs[b][t].item<double>() *
                  (reward[b].item<double>() - out.baselines[b][t].item<double>()) / 6.0;
    }
  }
  EXPECT_NEAR(loss.reinforce.item<double>(), expected, 1e-5);
  EXPECT_NEAR(loss.total.item<double>(),
              loss.classification.item<double>() + loss.baseline.item<double>() + 0.5 * expected, 1e-5);
  EXPECT_EQ(out.locations.sizes(), (std::vector<std::int64_t>{6, 4, 2}));
  EXPECT_TRUE(torch::equal(out.locations.select(1, 0), torch::zeros({6, 2}))) << "l0 is the centre";
  EXPECT_LE(out.locations.abs().max().item<float>(), 1.0f);
}

TEST(Ram, DeterministicModeFollowsThePolicyMeanAndMonteCarloAveragesProbabilities) {
  torch::manual_seed(7);
  auto ram = tiny_ram();
  ram->eval();
  torch::NoGradGuard no_grad;
  const auto images = torch::rand({5, 1, 20, 20});
  const auto a = ram->forward(images, false), b = ram->forward(images, false);
  EXPECT_TRUE(torch::equal(a.log_probs, b.log_probs));
  EXPECT_TRUE(torch::equal(am::ram_predict(ram, images, 0), a.log_probs));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(9);
  const auto mc = am::ram_predict(ram, images, 3, gen);
  auto gen2 = at::make_generator<at::CPUGeneratorImpl>(9);
  auto mean = torch::zeros_like(mc);
  for (int m = 0; m < 3; ++m) mean += ram->forward(images, true, gen2).log_probs.exp() / 3.0;
  EXPECT_TRUE(torch::allclose(mc, mean.log(), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(mc.exp().sum(1), torch::ones({5}), 1e-5, 1e-6));
}

// The std given to forward is the one sampled with: the first move's offset from the
// policy mean (the same in both passes, since the first glimpse is always central)
// spreads by it, and the log-probability is that of N(mean, std^2).
TEST(Ram, AnExplicitLocationStdIsTheOneSampledWith) {
  torch::manual_seed(3);
  auto ram = tiny_ram();
  torch::NoGradGuard no_grad;
  const auto images = torch::rand({1, 1, 20, 20}).expand({4000, 1, 20, 20}).contiguous();
  const auto mean = ram->forward(images, false).locations.select(1, 1);
  ASSERT_LT(mean.abs().max().item<float>(), 0.6f) << "clamping would narrow the spread";
  for (const double std : {0.02, 0.06}) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
    const auto out = ram->forward(images, true, gen, false, std);
    const auto offset = out.locations.select(1, 1) - mean;
    EXPECT_NEAR(offset.std().item<double>(), std, 0.05 * std);
    EXPECT_TRUE(torch::allclose(out.policy_log_probs.select(1, 0),
                                attend::attention::gaussian_log_prob(out.locations.select(1, 1), mean, std), 1e-4,
                                1e-4));
  }
  EXPECT_THROW(ram->forward(images, true, std::nullopt, false, 0.0), c10::Error);
}

TEST(Ram, AnnealedStdFallsByHalfACosineFromStartToFinal) {
  EXPECT_DOUBLE_EQ(am::annealed_location_std(0.3, 0.1, 0, 5), 0.3);
  EXPECT_DOUBLE_EQ(am::annealed_location_std(0.3, 0.1, 2, 5), 0.2);
  EXPECT_NEAR(am::annealed_location_std(0.3, 0.1, 1, 5), 0.1 + 0.2 * 0.5 * (1 + std::cos(M_PI / 4)), 1e-12);
  EXPECT_DOUBLE_EQ(am::annealed_location_std(0.3, 0.1, 4, 5), 0.1);
  EXPECT_DOUBLE_EQ(am::annealed_location_std(0.3, 0.1, 9, 5), 0.1) << "past the end";
  EXPECT_DOUBLE_EQ(am::annealed_location_std(0.0, 0.1, 0, 5), 0.1) << "0 = no annealing";
  EXPECT_DOUBLE_EQ(am::annealed_location_std(0.3, 0.1, 0, 1), 0.1) << "one epoch trains at the final std";
}

TEST(Ram, OptionsRoundTripThroughJsonAndNonsenseIsRejected) {
  const auto o = am::RamOptions().glimpses(8).glimpse_size(12).scales(3).scale_ratio(1.5).core(am::RamCore::kLstm);
  const auto back = am::RamOptions::from_json(o.to_json());
  EXPECT_EQ(back.to_json(), o.to_json());
  EXPECT_THROW(am::Ram(am::RamOptions().scales(0)), c10::Error);
  EXPECT_THROW(am::Ram(am::RamOptions().location_std(0)), c10::Error);
  auto gru = o.to_json();
  gru["core"] = "gru";
  EXPECT_THROW(am::RamOptions::from_json(gru), c10::Error);
  EXPECT_EQ(back.to_json()["core"], "lstm") << "the checkpoint's JSON keeps the name";
  auto ram = tiny_ram();
  EXPECT_THROW(ram->forward(torch::rand({2, 3, 20, 20}), false), c10::Error) << "wrong channel count";
  EXPECT_THROW(ram->forward(torch::rand({1, 20, 20}), false), c10::Error) << "wrong rank";
}

TEST(GaussianPolicy, LogProbabilityIsOfTheRawSampleAndOnlyTheMeanGetsGradient) {
  auto mean = torch::tensor({{0.9f, -0.2f}, {0.0f, 0.5f}}, torch::requires_grad(true));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  const double std = 0.5;
  const auto s = aa::gaussian_location_policy(mean, std, true, gen);
  EXPECT_FALSE(s.location.requires_grad());
  EXPECT_FALSE(s.raw.requires_grad());
  EXPECT_LE(s.location.abs().max().item<float>(), 1.0f);
  EXPECT_TRUE(torch::equal(s.location, s.raw.clamp(-1, 1)));
  const auto z = (s.raw - mean.detach()) / std;
  const auto expected = (-0.5 * z * z - std::log(std) - 0.5 * std::log(2 * M_PI)).sum(1);
  EXPECT_TRUE(torch::allclose(s.log_prob, expected, 1e-5, 1e-6));
  s.log_prob.sum().backward();
  EXPECT_TRUE(torch::allclose(mean.grad(), (s.raw - mean.detach()) / (std * std), 1e-4, 1e-5));
  const auto d = aa::gaussian_location_policy(mean, std, false);
  EXPECT_TRUE(torch::equal(d.raw, mean.detach()));
  EXPECT_THROW(aa::gaussian_location_policy(mean, 0.0, true), c10::Error);
}

// random: uniform over the image when sampling (mean 0, variance 1/3 per axis), the
// centre when following the mean; centre: exactly the centre; learned: a parameter
// that gets gradients, present only in that mode.
TEST(Ram, FirstLocationFollowsItsMode) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const auto images = torch::rand({4000, 1, 20, 20});
  auto random = am::Ram(am::RamOptions().glimpses(2).glimpse_size(4).hidden(8).first_location(am::FirstLocation::kRandom));
  torch::NoGradGuard no_grad;
  const auto first = random->forward(images, /*sample=*/true, gen).locations.select(1, 0);
  EXPECT_NEAR(first.mean().item<double>(), 0.0, 0.03);
  EXPECT_NEAR(first.var(0).min().item<double>(), 1.0 / 3.0, 0.03);
  EXPECT_NEAR(first.var(0).max().item<double>(), 1.0 / 3.0, 0.03);
  EXPECT_LE(first.abs().max().item<double>(), 1.0);
  EXPECT_TRUE(torch::equal(random->forward(images.narrow(0, 0, 4), false).locations.select(1, 0), torch::zeros({4, 2})));
  auto centre = am::Ram(am::RamOptions().glimpses(2).glimpse_size(4).hidden(8));
  EXPECT_TRUE(torch::equal(centre->forward(images.narrow(0, 0, 8), true, gen).locations.select(1, 0),
                           torch::zeros({8, 2})));
  EXPECT_FALSE(centre->named_parameters().contains("first_location"));
  EXPECT_FALSE(random->named_parameters().contains("first_location"));
  EXPECT_FALSE(am::RamOptions().to_json().contains("first_location")) << "centre is what old checkpoints mean";
  EXPECT_EQ(am::RamOptions::from_json(random->options.to_json()).first_location(), am::FirstLocation::kRandom);
}

TEST(Ram, ALearnedFirstLocationIsTrainedByTheClassificationLoss) {
  torch::manual_seed(4);
  auto learned = am::Ram(am::RamOptions().glimpses(2).glimpse_size(4).hidden(8).classes(3)
                             .first_location(am::FirstLocation::kLearned));
  ASSERT_TRUE(learned->named_parameters().contains("first_location"));
  const auto out = learned->forward(torch::rand({6, 1, 20, 20}), true);
  EXPECT_TRUE(torch::equal(out.locations.select(1, 0).detach(), torch::zeros({6, 2}))) << "starts at the centre";
  am::ram_loss(out, torch::randint(0, 3, {6})).classification.backward();
  ASSERT_TRUE(learned->first_location.grad().defined());
  EXPECT_GT(learned->first_location.grad().abs().sum().item<float>(), 0.0f);
}
