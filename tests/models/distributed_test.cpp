// Data-parallel training: ranks are threads of this process (each with its own
// c10d Gloo process group, joined through a FileStore or a TCPStore on loopback), so
// a test sees every rank's parameters. The process-level behaviour (attend launch,
// a killed worker) is tested in tests/apps/distributed.cmake.
#include <attend/datasets/rng.h>
#include <attend/models/caption_model.h>
#include <attend/models/caption_train.h>
#include <attend/models/distributed.h>
#include <attend/models/ram.h>
#include <attend/models/trainer.h>

#include <test_support.h>

#include "caption_support.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <set>
#include <thread>

namespace am = attend::models;
namespace ds = attend::datasets;
using attend::testing::contains;
using attend::testing::TempDir;

namespace {

/// Runs f(rank) on `world` threads; returns each rank's error ("" = none).
std::vector<std::string> on_ranks(int world, const std::function<void(int)>& f) {
  std::vector<std::string> errors(static_cast<std::size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        f(r);
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

am::DistributedEnv env_of(int rank, int world, int port = 29500) {
  am::DistributedEnv env;
  env.rank = rank;
  env.world_size = world;
  env.local_rank = rank;
  env.master_port = port;
  return env;
}

am::ProcessGroupOptions file_store(const TempDir& dir, const std::string& name) {
  return am::ProcessGroupOptions().store("file:" + dir.file(name)).timeout_seconds(30);
}

/// A port nothing listens on right now.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

/// Runs train(rank, hooks) on one rank per module, each with a process group of its
/// own (a FileStore in `dir`) and a DataParallel over its module joined to `hooks`;
/// returns each rank's error ("" = none).
std::vector<std::string> on_parallel_ranks(const std::vector<torch::nn::Module*>& modules, const TempDir& dir,
                                           const std::function<void(int, am::FitHooks&)>& train,
                                           double bucket_mb = 1.0, double timeout = 30, bool spin = false,
                                           bool balance = false) {
  const int world = static_cast<int>(modules.size());
  return on_ranks(world, [&](int r) {
    am::ProcessGroup group(env_of(r, world), file_store(dir, "store").timeout_seconds(timeout).spin_wait(spin));
    am::DataParallel parallel(group, *modules[static_cast<std::size_t>(r)],
                              am::DataParallelOptions().bucket_mb(bucket_mb).balance(balance));
    am::FitHooks hooks;
    parallel.join(hooks);
    train(r, hooks);
  });
}

template <typename Holder>
std::vector<torch::nn::Module*> modules_of(std::vector<Holder>& holders) {
  std::vector<torch::nn::Module*> out;
  for (auto& h : holders) out.push_back(h.get());
  return out;
}

double max_difference(torch::nn::Module& a, torch::nn::Module& b) {
  double worst = 0;
  const auto pa = a.parameters(), pb = b.parameters();
  for (std::size_t i = 0; i < pa.size(); ++i) worst = std::max(worst, (pa[i] - pb[i]).abs().max().item<double>());
  return worst;
}

am::CheckpointInfo description(double lr) {
  am::CheckpointInfo info;
  info.model.kind = "test";
  info.model.options = {{"layers", 2}};
  info.training = {{"seed", 1}, {"lr", lr}};
  return info;
}

// ---------------------------------------------------------------------------
// A float64 CNN trained on fixed data by fit(), with the batches a one-process run
// takes: the same global batches, cut into shards by the DataParallel hooks.

torch::nn::Sequential make_cnn(std::uint64_t seed) {
  torch::manual_seed(seed);
  torch::nn::Sequential net(torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 3, 3)), torch::nn::Functional(torch::relu),
                            torch::nn::Flatten(), torch::nn::Linear(3 * 6 * 6, 5), torch::nn::Functional(torch::tanh),
                            torch::nn::Linear(5, 4));
  net->to(torch::kFloat64);
  return net;
}

struct CnnData {
  torch::Tensor images, labels;
  CnnData() {
    auto g = at::make_generator<at::CPUGeneratorImpl>(3);
    images = torch::randn({24, 1, 8, 8}, g, torch::kFloat64);
    labels = torch::randint(0, 4, {24}, g, torch::kInt64);
  }
};

/// Trains `net` for 2 epochs of batch 7 (4 steps each, the last of 3) with Adam.
void train_cnn(torch::nn::Sequential& net, const CnnData& data, const am::FitHooks& hooks,
               const am::FitOptions& options = am::FitOptions().epochs(2).steps_per_epoch(4)) {
  torch::optim::Adam adam(net->parameters(), torch::optim::AdamOptions(0.01));
  const std::int64_t batch = 7;
  auto loss = [&](const am::StepContext& c) {
    const auto order = ds::epoch_order(24, 5, c.epoch);
    const auto idx = am::shard_batch(hooks, ds::order_batch(order, batch, c.step_in_epoch));
    const auto index = torch::tensor(idx, torch::kInt64);
    const auto l = torch::cross_entropy_loss(net->forward(data.images.index_select(0, index)),
                                             data.labels.index_select(0, index));
    return am::StepLoss{l, static_cast<std::int64_t>(idx.size()), {{"twice", 2 * l.item<double>()}}};
  };
  am::fit(*net, adam, description(0.01), options, loss, nullptr, nullptr, nullptr, hooks);
}

void expect_cnn_equivalence(int world, double bucket_mb, bool spin = false) {
  const CnnData data;
  auto reference = make_cnn(100);
  train_cnn(reference, data, {});

  // Every rank starts from other weights: rank 0's must reach all of them.
  std::vector<torch::nn::Sequential> nets;
  for (int r = 0; r < world; ++r) nets.push_back(make_cnn(100 + static_cast<std::uint64_t>(r)));
  TempDir dir;
  const auto errors = on_parallel_ranks(modules_of(nets), dir, [&](int r, am::FitHooks& hooks) {
    train_cnn(nets[static_cast<std::size_t>(r)], data, hooks);
  }, bucket_mb, 30, spin);
  for (int r = 0; r < world; ++r) {
    ASSERT_EQ(errors[static_cast<std::size_t>(r)], "") << "rank " << r;
    EXPECT_LT(max_difference(*nets[static_cast<std::size_t>(r)], *reference), 1e-10) << "rank " << r;
  }
}

/// Like train_cnn, but example i of the data counts 1 + i % 4 times in the loss, a
/// mean over those terms (as a captioner's loss is a mean over words); with
/// `report_terms` the loss function says so through StepLoss::terms.
void train_cnn_by_terms(torch::nn::Sequential& net, const CnnData& data, const am::FitHooks& hooks,
                        bool report_terms) {
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.1));
  auto loss = [&](const am::StepContext& c) {
    const auto order = ds::epoch_order(24, 5, c.epoch);
    const auto idx = am::shard_batch(hooks, ds::order_batch(order, 7, c.step_in_epoch));
    const auto index = torch::tensor(idx, torch::kInt64);
    const auto counts = (index.remainder(4) + 1).to(torch::kFloat64);
    const auto each = torch::nn::functional::cross_entropy(
        net->forward(data.images.index_select(0, index)), data.labels.index_select(0, index),
        torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
    const auto terms = counts.sum().item<double>();
    const auto l = (each * counts).sum() / terms;
    return am::StepLoss{l, static_cast<std::int64_t>(idx.size()), {{"twice", 2 * l.item<double>()}},
                        report_terms ? static_cast<std::int64_t>(terms) : 0};
  };
  am::fit(*net, sgd, description(0.1), am::FitOptions().epochs(2).steps_per_epoch(4), loss, nullptr, nullptr,
          nullptr, hooks);
}

// A loss that is a mean over terms (words) rather than examples: ranks holding more
// terms weigh more, and 2 or 3 ranks take the one-process steps to float64
// precision; weighing by the examples instead does not.
TEST(DataParallel, LossesThatAreMeansOverTermsGiveTheOneProcessSteps) {
  const CnnData data;
  auto reference = make_cnn(100);
  train_cnn_by_terms(reference, data, {}, true);
  for (const int world : {2, 3}) {
    for (const bool report : {true, false}) {
      std::vector<torch::nn::Sequential> nets;
      for (int r = 0; r < world; ++r) nets.push_back(make_cnn(100));
      TempDir dir;
      const auto errors = on_parallel_ranks(modules_of(nets), dir, [&](int r, am::FitHooks& hooks) {
        train_cnn_by_terms(nets[static_cast<std::size_t>(r)], data, hooks, report);
      });
      for (int r = 0; r < world; ++r) {
        ASSERT_EQ(errors[static_cast<std::size_t>(r)], "") << "rank " << r;
        const auto difference = max_difference(*nets[static_cast<std::size_t>(r)], *reference);
        if (report) {
          EXPECT_LT(difference, 1e-10) << world << " ranks, rank " << r;
        } else {
          EXPECT_GT(difference, 1e-6) << world << " ranks, rank " << r << ": weighing by examples is not exact";
        }
      }
    }
  }
}

// The captioner through train_captioner: its loss is a mean over words and captions
// of a level-2 scene differ in length ("a 3 above a 7", "a 3 to the left of a 7"), so
// the ranks must weigh by words; each image's reference caption must not depend on
// the shard it falls in. Two ranks then take one process's steps (float32, SGD).
TEST(DataParallel, TwoRanksTakeTheOneProcessStepsOfTheCaptioner) {
  const ds::SceneCaptionSource train(attend::testing::bar_scene_generator(), ds::ObjectSplit::kTrain, 20);
  const auto options = am::TrainOptions().epochs(2).batch_size(10).optimizer(am::OptimizerKind::kSgd).momentum(0).lr(0.5).seed(5);
  auto make = [] {
    torch::manual_seed(2);
    return am::make_model("captioner", attend::testing::small_captioner_options());
  };
  auto reference = make();
  am::train_captioner(dynamic_cast<am::CaptionModel&>(*reference), train, nullptr, options,
                      am::CaptionTrainOptions());
  for (const bool by_words : {true, false}) {
    std::vector<std::unique_ptr<am::Model>> models;
    models.push_back(make());
    models.push_back(make());
    std::vector<torch::nn::Module*> modules{&models[0]->module(), &models[1]->module()};
    TempDir dir;
    const auto errors = on_parallel_ranks(modules, dir, [&](int r, am::FitHooks& hooks) {
      if (!by_words) hooks.before_backward = nullptr;  // the ranks then weigh by examples
      am::train_captioner(dynamic_cast<am::CaptionModel&>(*models[static_cast<std::size_t>(r)]), train, nullptr,
                          options, am::CaptionTrainOptions(), nlohmann::json::object(), nullptr, nullptr, hooks);
    });
    for (int r = 0; r < 2; ++r) {
      ASSERT_EQ(errors[static_cast<std::size_t>(r)], "") << "rank " << r;
      const auto difference = max_difference(models[static_cast<std::size_t>(r)]->module(), reference->module());
      if (by_words) {
        EXPECT_LT(difference, 1e-6) << "rank " << r;
      } else {
        EXPECT_GT(difference, 1e-4) << "rank " << r << ": weighing by examples is not the one-process step";
      }
    }
  }
}

TEST(DataParallel, BucketsFillInReverseParameterOrderUpToTheirSize) {
  TempDir dir;
  auto net = make_cnn(1);  // float64 parameters of 27, 3, 540, 5, 20 and 4 numbers
  const auto errors = on_ranks(1, [&](int) {
    am::ProcessGroup group(env_of(0, 1), file_store(dir, "store"));
    const auto buckets_at = [&](double mb) {
      return am::DataParallel(group, *net, am::DataParallelOptions().bucket_mb(mb)).bucket_of_parameters();
    };
    // 419 bytes: {fc2 bias, fc2 weight, fc1 bias} {fc1 weight} {conv bias, conv weight}
    const auto small = buckets_at(0.0004);
    ASSERT_EQ(small.size(), net->parameters().size());
    EXPECT_EQ(small.back(), 0);  // the last parameter's gradient comes first
    for (std::size_t k = 1; k < small.size(); ++k) EXPECT_LE(small[k], small[k - 1]);
    EXPECT_EQ(small, (std::vector<std::int64_t>{2, 2, 1, 0, 0, 0}));
    for (const auto b : buckets_at(0.0)) EXPECT_EQ(b, 0);  // one bucket after backward
    for (const auto b : buckets_at(1.0)) EXPECT_EQ(b, 0);  // all fit in 1 MB
    am::DataParallel parallel(group, *net);
    am::FitHooks hooks;
    parallel.join(hooks);
    train_cnn(net, CnnData(), hooks);
    EXPECT_EQ(parallel.stats().steps, 8);
    EXPECT_EQ(parallel.stats().bytes_per_step,
              8 * (net->parameters().size() + [&] {
                std::int64_t n = 0;
                for (const auto& p : net->parameters()) n += p.numel();
                return n;
              }()));
  });
  EXPECT_EQ(errors[0], "");
}

TEST(DataParallel, ARanksOwnWorkIsTimedFromItsShardToTheEndOfBackward) {
  TempDir dir;
  auto net = make_cnn(1);
  const auto errors = on_ranks(1, [&](int) {
    am::ProcessGroup group(env_of(0, 1), file_store(dir, "store"));
    // Taking the shard: each step's loss sleeps 20 ms after it, so its own part is
    // at least that long; the wall time of the whole fit bounds it from above.
    {
      am::DataParallel parallel(group, *net);
      am::FitHooks hooks;
      parallel.join(hooks);
      torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.01));
      const CnnData data;
      auto loss = [&](const am::StepContext& c) {
        const auto idx = am::shard_batch(hooks, ds::order_batch(ds::epoch_order(24, 5, c.epoch), 6, c.step_in_epoch));
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        const auto index = torch::tensor(idx, torch::kInt64);
        return am::StepLoss{torch::cross_entropy_loss(net->forward(data.images.index_select(0, index)),
                                                      data.labels.index_select(0, index)),
                            static_cast<std::int64_t>(idx.size()),
                            {}};
      };
      const auto t0 = std::chrono::steady_clock::now();
      am::fit(*net, sgd, description(0.01), am::FitOptions().epochs(1).steps_per_epoch(3), loss, nullptr, nullptr,
              nullptr, hooks);
      const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const auto s = parallel.stats();
      EXPECT_EQ(s.steps, 3);
      EXPECT_EQ(s.work_steps, 3);
      EXPECT_GE(s.work_seconds, 3 * 0.020);
      EXPECT_LT(s.work_seconds + s.wait_seconds, wall);
    }
    // A loss function that never takes a shard leaves nothing timed (and the
    // data-parallel line then leaves the figure out).
    {
      am::DataParallel parallel(group, *net);
      am::FitHooks hooks;
      parallel.join(hooks);
      torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.01));
      const CnnData data;
      auto loss = [&](const am::StepContext&) {
        return am::StepLoss{torch::cross_entropy_loss(net->forward(data.images), data.labels), data.images.size(0),
                            {}};
      };
      am::fit(*net, sgd, description(0.01), am::FitOptions().epochs(1).steps_per_epoch(2), loss, nullptr, nullptr,
              nullptr, hooks);
      EXPECT_EQ(parallel.stats().steps, 2);
      EXPECT_EQ(parallel.stats().work_steps, 0);
      EXPECT_EQ(parallel.stats().work_seconds, 0.0);
    }
  });
  EXPECT_EQ(errors[0], "");
}

TEST(DataParallel, TwoRanksTakeTheOneProcessStepsOfACnnToFloat64Precision) { expect_cnn_equivalence(2, 1.0); }

TEST(DataParallel, SmallBucketsSentDuringBackwardGiveTheSameSteps) { expect_cnn_equivalence(2, 0.0004); }

TEST(DataParallel, OneBucketAfterBackwardGivesTheSameSteps) { expect_cnn_equivalence(2, 0.0); }

TEST(DataParallel, RanksPollingForTheirCollectivesGiveTheSameSteps) { expect_cnn_equivalence(2, 0.0004, true); }

TEST(DataParallel, BalancedShardSizesFollowTheSpeedsAndSumToTheBatch) {
  using Sizes = std::vector<std::int64_t>;
  EXPECT_EQ(am::balanced_shard_sizes(128, {2.0, 1.0}), (Sizes{85, 43}));   // 1 each, then 84 and 42
  EXPECT_EQ(am::balanced_shard_sizes(10, {1.0, 1.0, 1.0}), (Sizes{4, 3, 3}));  // ties to the lower rank
  EXPECT_EQ(am::balanced_shard_sizes(5, {1000.0, 1.0}), (Sizes{4, 1}));  // never below one example
  EXPECT_EQ(am::balanced_shard_sizes(7, {3.0, 1.0, 0.5}), (Sizes{4, 2, 1}));
  EXPECT_EQ(am::balanced_shard_sizes(2, {5.0, 1.0, 1.0}), (Sizes{1, 1, 0}));  // fewer examples than ranks
  EXPECT_EQ(am::balanced_shard_sizes(0, {1.0, 2.0}), (Sizes{0, 0}));
  for (const std::int64_t size : {4, 64, 1000}) {
    const auto sizes = am::balanced_shard_sizes(size, {0.3, 7.0, 2.2, 1.0});
    std::int64_t sum = 0;
    for (const auto n : sizes) {
      EXPECT_GE(n, 1);
      sum += n;
    }
    EXPECT_EQ(sum, size);
  }
  EXPECT_THROW(am::balanced_shard_sizes(8, {1.0, 0.0}), c10::Error);
  EXPECT_THROW(am::balanced_shard_sizes(-1, {1.0}), c10::Error);
  EXPECT_THROW(am::balanced_shard_sizes(8, {}), c10::Error);
}

/// Makes rank `slow` slow (`ms` more per step) and records each rank's shard sizes in
/// `taken`.
void slow_rank(am::FitHooks& hooks, int r, std::vector<std::vector<std::int64_t>>& taken, int slow = 1,
               int ms = 40) {
  const auto shard = hooks.shard;
  hooks.shard = [&taken, r, shard, slow, ms](const std::vector<std::int64_t>& batch) {
    auto mine = shard(batch);
    taken[static_cast<std::size_t>(r)].push_back(static_cast<std::int64_t>(mine.size()));
    if (r == slow) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return mine;
  };
}

// Rank 1 is slow (100 ms more per step, so at most 30 examples/s against rank 0's
// hundreds or thousands): after the first exchange of speeds it takes the smaller part of
// every batch, and the parameters are still those of one process. How much smaller
// depends on rank 0's measured speed, which a loaded machine moves (a cold first step of
// 25 ms gave rank 1 two of 7 in CI): the exact split for given speeds is
// BalancedShardSizesFollowTheSpeedsAndSumToTheBatch's.
TEST(DataParallel, ShardsSizedToSpeedShrinkTheSlowRankAndGiveTheSameSteps) {
  const CnnData data;
  auto reference = make_cnn(100);
  train_cnn(reference, data, {});
  std::vector<torch::nn::Sequential> nets{make_cnn(100), make_cnn(101)};
  std::vector<std::vector<std::int64_t>> taken(2);
  TempDir dir;
  const auto errors = on_parallel_ranks(modules_of(nets), dir, [&](int r, am::FitHooks& hooks) {
    slow_rank(hooks, r, taken, 1, 100);
    train_cnn(nets[static_cast<std::size_t>(r)], data, hooks);
  }, 1.0, 30, false, /*balance=*/true);
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(errors[static_cast<std::size_t>(r)], "") << "rank " << r;
    EXPECT_LT(max_difference(*nets[static_cast<std::size_t>(r)], *reference), 1e-10) << "rank " << r;
  }
  ASSERT_EQ(taken[0].size(), 8u);
  ASSERT_EQ(taken[1].size(), 8u);
  // Steps 0 and 1 split evenly (no speeds yet: rank 1's first one travels with step 1).
  EXPECT_EQ(taken[0][0], 4);
  EXPECT_EQ(taken[1][0], 3);
  for (std::size_t s = 2; s < 8; ++s) {
    EXPECT_EQ(taken[0][s] + taken[1][s], s % 4 == 3 ? 3 : 7) << "step " << s;
    // Below the even split of 4/3 in a batch of 7; a batch of 3 splits 2/1 either way,
    // as no rank goes below one example.
    if (s % 4 == 3) EXPECT_EQ(taken[1][s], 1) << "step " << s;
    else EXPECT_LE(taken[1][s], 2) << "step " << s;
  }
}

// The speeds are kept in the checkpoint: a run resumed after its first epoch gives the
// slow rank its small part from the first step on (an even split there would be 4/3),
// and still ends with the parameters of one uninterrupted process. They only bridge
// the steps before the first measurement arrives: resumed with rank 0 the slow one now,
// the third step is cut by what the resumed run measured (smoothed into the stored
// speeds instead, rank 0 would keep its 5 or 6).
TEST(DataParallel, AResumedRunStartsFromTheSpeedsItHadMeasured) {
  const CnnData data;
  auto reference = make_cnn(100);
  train_cnn(reference, data, {});
  std::vector<torch::nn::Sequential> nets{make_cnn(100), make_cnn(101)};
  TempDir dir;
  const auto run_dir = dir.file("run");
  std::vector<std::vector<std::int64_t>> taken(2);
  auto run = [&](std::int64_t epochs, int slow, int ms, const TempDir& store) {  // a fresh FileStore each
    for (auto& t : taken) t.clear();
    return on_parallel_ranks(modules_of(nets), store, [&](int r, am::FitHooks& hooks) {
      slow_rank(hooks, r, taken, slow, ms);
      train_cnn(nets[static_cast<std::size_t>(r)], data, hooks,
                am::FitOptions().epochs(epochs).steps_per_epoch(4).run_dir(run_dir));
    }, 1.0, 30, false, /*balance=*/true);
  };
  const TempDir store1, store2;
  auto errors = run(1, 1, 100, store1);
  ASSERT_EQ(errors, (std::vector<std::string>{"", ""}));
  const auto stored = am::read_checkpoint_info(run_dir + "/last.pt").state.at("hooks").at("shard_speeds");
  ASSERT_EQ(stored.size(), 2u);
  // The split the stored speeds give a batch of 7 (how uneven depends on rank 0's
  // measured speed, which a loaded machine moves); it must differ from the even 4/3 for
  // the resumed run to show where its first split came from.
  const auto split = am::balanced_shard_sizes(7, {stored[0].get<double>(), stored[1].get<double>()});
  ASSERT_LE(split[1], 2) << stored;

  // Rank 0 now sleeps 200 ms with its 5 or 6 examples (at most 30 examples/s) while
  // rank 1 does its one or two at full speed.
  errors = run(2, 0, 200, store2);
  ASSERT_EQ(errors, (std::vector<std::string>{"", ""}));
  ASSERT_EQ(taken[1].size(), 4u);
  EXPECT_EQ(taken[0][0], split[0]);
  EXPECT_EQ(taken[1][0], split[1]) << "the first resumed step splits by the stored speeds";
  EXPECT_EQ(taken[0][1], split[0]) << "nothing measured yet: the stored speeds still";
  // A step's speed travels with the next step's values, so step 2 is the first one cut
  // by what the resumed run measured.
  EXPECT_LE(taken[0][2], 3) << "the third step splits by the resumed run's own speeds";
  for (int r = 0; r < 2; ++r) {
    EXPECT_LT(max_difference(*nets[static_cast<std::size_t>(r)], *reference), 1e-10) << "rank " << r;
  }
}

TEST(DataParallel, ThreeRanksWithUnevenShardsGiveTheSameSteps) {
  // Batches of 7 and 3 over 3 ranks: shards of 3/2/2 and 1/1/1.
  expect_cnn_equivalence(3, 0.0004);
}

TEST(DataParallel, RanksWithoutAnExampleInASmallBatchGiveTheSameSteps) {
  // The last batch of each epoch has 3 examples for 4 ranks: one rank has none.
  expect_cnn_equivalence(4, 0.0004);
}

TEST(DataParallel, Float32StepsAgreeToRoundingOfTheSums) {
  const CnnData data;
  auto reference = make_cnn(100);
  reference->to(torch::kFloat32);
  CnnData data32;
  data32.images = data.images.to(torch::kFloat32);
  data32.labels = data.labels;
  train_cnn(reference, data32, {});
  std::vector<torch::nn::Sequential> nets{make_cnn(100), make_cnn(101)};
  for (auto& n : nets) n->to(torch::kFloat32);
  TempDir dir;
  const auto errors = on_parallel_ranks(modules_of(nets), dir, [&](int r, am::FitHooks& hooks) {
    train_cnn(nets[static_cast<std::size_t>(r)], data32, hooks);
  });
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(errors[static_cast<std::size_t>(r)], "");
    // The stated float32 tolerance (docs/distributed.md): 1e-5 after 8 Adam steps.
    EXPECT_LT(max_difference(*nets[static_cast<std::size_t>(r)], *reference), 1e-5);
  }
  // Both ranks hold bit-identical parameters: they apply the same reduced gradient.
  EXPECT_EQ(max_difference(*nets[0], *nets[1]), 0.0);
}

// ---------------------------------------------------------------------------
// The RAM with REINFORCE and its learned baseline, in float64. The sampled
// locations of each half of the batch come from a generator keyed on (step, half),
// in the one-process reference as in the rank that trains that half, so the runs
// differ only in where the gradients are summed.

am::Ram make_ram(std::uint64_t seed) {
  torch::manual_seed(seed);
  am::Ram ram(am::RamOptions()
                  .glimpse_size(4)
                  .scales(2)
                  .glimpses(3)
                  .what_size(8)
                  .where_size(8)
                  .glimpse_features(16)
                  .hidden(16)
                  .classes(3)
                  .location_std(0.2));
  ram->to(torch::kFloat64);
  return ram;
}

torch::Tensor ram_half_loss(am::Ram& ram, const torch::Tensor& images, const torch::Tensor& labels,
                            std::int64_t step, std::int64_t half) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(static_cast<std::uint64_t>(1000 * step + half));
  const auto out = ram->forward(images, /*sample=*/true, g);
  return am::ram_loss(out, labels, /*reinforce_weight=*/1.0).total;
}

TEST(DataParallel, TwoRanksTakeTheOneProcessStepsOfTheRamWithReinforce) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
  const auto images = torch::rand({16, 1, 12, 12}, gen, torch::kFloat64);
  const auto labels = torch::randint(0, 3, {16}, gen, torch::kInt64);
  const std::int64_t batch = 8;
  auto run = [&](am::Ram& ram, const am::FitHooks& hooks, int rank, int world) {
    torch::optim::SGD sgd(ram->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
    auto loss = [&](const am::StepContext& c) {
      const auto order = ds::epoch_order(16, 9, c.epoch);
      const auto global = ds::order_batch(order, batch, c.step_in_epoch);
      const auto idx = am::shard_batch(hooks, global);
      const auto take = [&](const std::vector<std::int64_t>& i) { return torch::tensor(i, torch::kInt64); };
      if (world == 1) {
        // Batch B as the mean of its two halves' means, each half with its samples.
        const std::vector<std::int64_t> a(global.begin(), global.begin() + 4), b(global.begin() + 4, global.end());
        const auto l = (ram_half_loss(ram, images.index_select(0, take(a)), labels.index_select(0, take(a)),
                                      c.global_step, 0) +
                        ram_half_loss(ram, images.index_select(0, take(b)), labels.index_select(0, take(b)),
                                      c.global_step, 1)) /
                       2;
        return am::StepLoss{l, 8, {}};
      }
      const auto l = ram_half_loss(ram, images.index_select(0, take(idx)), labels.index_select(0, take(idx)),
                                   c.global_step, rank);
      return am::StepLoss{l, static_cast<std::int64_t>(idx.size()), {}};
    };
    am::fit(*ram, sgd, description(0.05), am::FitOptions().epochs(3).steps_per_epoch(2), loss, nullptr, nullptr,
            nullptr, hooks);
  };
  auto reference = make_ram(200);
  run(reference, {}, 0, 1);
  std::vector<am::Ram> rams{make_ram(200), make_ram(201)};
  TempDir dir;
  const auto errors = on_parallel_ranks(modules_of(rams), dir, [&](int r, am::FitHooks& hooks) {
    run(rams[static_cast<std::size_t>(r)], hooks, r, 2);
  }, 0.001);
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(errors[static_cast<std::size_t>(r)], "") << "rank " << r;
    EXPECT_LT(max_difference(*rams[static_cast<std::size_t>(r)], *reference), 1e-10) << "rank " << r;
  }
  // The policy's parameters moved: REINFORCE took part.
  EXPECT_GT(max_difference(*reference, *make_ram(200)), 1e-4);
}

// ---------------------------------------------------------------------------

TEST(DataParallel, ShardsOfAnEpochAreDisjointAndCoverTheDataSet) {
  const std::int64_t n = 50, batch = 8;
  for (const int world : {1, 2, 3, 5}) {
    const auto order = ds::epoch_order(n, 7, 0);
    std::vector<int> seen(static_cast<std::size_t>(n), 0);
    for (std::int64_t step = 0; step * batch < n; ++step) {
      const auto global = ds::order_batch(order, batch, step);
      std::int64_t covered = 0;
      for (int r = 0; r < world; ++r) {
        const auto [begin, end] = am::shard_range(static_cast<std::int64_t>(global.size()), r, world);
        EXPECT_EQ(begin, covered);
        EXPECT_LE(end - begin, (static_cast<std::int64_t>(global.size()) + world - 1) / world);
        EXPECT_GE(end - begin, static_cast<std::int64_t>(global.size()) / world);
        for (auto i = begin; i < end; ++i) ++seen[static_cast<std::size_t>(global[static_cast<std::size_t>(i)])];
        covered = end;
      }
      EXPECT_EQ(covered, static_cast<std::int64_t>(global.size()));
    }
    for (const int count : seen) EXPECT_EQ(count, 1) << world << " ranks";
  }
  // The order is a function of (seed, epoch): another per epoch, the same again.
  EXPECT_NE(ds::epoch_order(n, 7, 0), ds::epoch_order(n, 7, 1));
  EXPECT_EQ(ds::epoch_order(n, 7, 1), ds::epoch_order(n, 7, 1));
}

TEST(DataParallel, RanksRunningAnotherTrainingStopAtTheStartNamingTheField) {
  std::vector<torch::nn::Sequential> nets{make_cnn(1), make_cnn(1)};
  TempDir dir;
  const CnnData data;
  const auto errors = on_parallel_ranks(modules_of(nets), dir, [&](int r, am::FitHooks& hooks) {
    auto& net = nets[static_cast<std::size_t>(r)];
    torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.1));
    auto loss = [&](const am::StepContext&) {
      return am::StepLoss{net->forward(data.images).sum(), 24, {}};
    };
    am::fit(*net, sgd, description(r == 0 ? 0.1 : 0.2), am::FitOptions(), loss, nullptr, nullptr, nullptr, hooks);
  });
  for (const auto& e : errors) {
    EXPECT_TRUE(contains(e, "rank 1 runs another model or training than rank 0: run.training.lr is 0.1 on rank 0 "
                            "but 0.2 on rank 1"))
        << e;
  }
}

// Ranks whose collectives would not match (other buckets, or shards sized to speed on
// one rank only) stop at the start naming the setting, instead of hanging or mixing
// tensors of other lengths.
TEST(DataParallel, RanksWithOtherBucketsOrBalancingStopAtTheStart) {
  const CnnData data;
  const std::vector<std::pair<am::DataParallelOptions, std::string>> cases{
      {am::DataParallelOptions().bucket_mb(0.0004), "data_parallel.bucket_sizes"},
      {am::DataParallelOptions().balance(true), "data_parallel.balance_shards is false on rank 0 but true on rank 1"}};
  for (const auto& [rank1, field] : cases) {
    std::vector<torch::nn::Sequential> nets{make_cnn(1), make_cnn(1)};
    TempDir dir;
    const auto errors = on_ranks(2, [&](int r) {
      am::ProcessGroup group(env_of(r, 2), file_store(dir, "store"));
      am::DataParallel parallel(group, *nets[static_cast<std::size_t>(r)], r == 0 ? am::DataParallelOptions() : rank1);
      am::FitHooks hooks;
      parallel.join(hooks);
      auto& net = nets[static_cast<std::size_t>(r)];
      torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.1));
      auto loss = [&](const am::StepContext&) { return am::StepLoss{net->forward(data.images).sum(), 24, {}}; };
      am::fit(*net, sgd, description(0.1), am::FitOptions(), loss, nullptr, nullptr, nullptr, hooks);
    });
    for (const auto& e : errors) {
      EXPECT_TRUE(contains(e, "rank 1 runs another model or training than rank 0: " + field)) << e;
    }
  }
}

TEST(DataParallel, ARankThatCannotSeeTheCheckpointStopsEveryRank) {
  TempDir dir;
  const auto x = torch::randn({16, 6});
  auto make = [] {
    torch::manual_seed(1);
    return torch::nn::Linear(6, 2);
  };
  auto loss_of = [&](torch::nn::Linear& net) {
    return [&](const am::StepContext&) { return am::StepLoss{net->forward(x).pow(2).mean(), 16, {}}; };
  };
  auto first = make();
  torch::optim::SGD sgd(first->parameters(), torch::optim::SGDOptions(0.1));
  am::fit(*first, sgd, description(0.1), am::FitOptions().run_dir(dir.file("shared")), loss_of(first));
  std::vector<torch::nn::Linear> nets{make(), make()};
  const auto errors = on_parallel_ranks(modules_of(nets), dir, [&](int r, am::FitHooks& hooks) {
    auto& net = nets[static_cast<std::size_t>(r)];
    torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.1));
    // Rank 1 is "another machine" whose run folder is not the shared one.
    const auto run = dir.file(r == 0 ? "shared" : "elsewhere");
    am::fit(*net, opt, description(0.1), am::FitOptions().epochs(2).run_dir(run), loss_of(net), nullptr, nullptr,
            nullptr, hooks);
  });
  for (const auto& e : errors) {
    EXPECT_TRUE(contains(e, "rank 1 finds no checkpoint to resume but rank 0 resumes from step 1; every rank must "
                            "see the same run folder"))
        << e;
  }
}

/// Rank 1 fails in its fourth step's loss; rank 0 must stop at once naming it.
void expect_lost_rank_found(bool spin) {
  std::vector<torch::nn::Sequential> nets{make_cnn(1), make_cnn(1)};
  TempDir dir;
  const CnnData data;
  const auto t0 = std::chrono::steady_clock::now();
  const auto errors = on_parallel_ranks(modules_of(nets), dir, [&](int r, am::FitHooks& hooks) {
    auto& net = nets[static_cast<std::size_t>(r)];
    torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.01));
    auto loss = [&](const am::StepContext& c) {
      if (r == 1 && c.global_step == 3) throw std::runtime_error("rank 1 dies");
      return am::StepLoss{net->forward(data.images).pow(2).mean(), 24, {}};
    };
    am::fit(*net, sgd, description(0.1), am::FitOptions().steps_per_epoch(10), loss, nullptr, nullptr, nullptr,
            hooks);
  }, 1.0, /*timeout=*/20, spin);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(errors[1], "rank 1 dies");
  EXPECT_TRUE(contains(errors[0], "rank 0: lost rank 1 during the step's metrics")) << errors[0];
  EXPECT_EQ(errors[0].find('\n'), std::string::npos);
  EXPECT_LT(seconds, 15.0);  // found at once, not after the 20 s timeout
}

TEST(DataParallel, ARankLostMidRunStopsTheOthersNamingIt) { expect_lost_rank_found(false); }

TEST(DataParallel, ARankLostMidRunStopsTheOthersPollingForCollectives) { expect_lost_rank_found(true); }

TEST(DataParallel, AStopRequestOnOneRankStopsAllAtTheSameStep) {
  std::vector<torch::nn::Sequential> nets{make_cnn(1), make_cnn(1)};
  TempDir dir;
  const CnnData data;
  std::atomic<bool> stop{false};
  std::vector<std::int64_t> steps(2);
  const auto errors = on_parallel_ranks(modules_of(nets), dir, [&](int r, am::FitHooks& hooks) {
    auto& net = nets[static_cast<std::size_t>(r)];
    torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.01));
    auto loss = [&](const am::StepContext& c) {
      if (r == 1 && c.global_step == 4) stop = true;  // only rank 1 is asked to stop
      return am::StepLoss{net->forward(data.images).pow(2).mean(), 24, {}};
    };
    static const std::atomic<bool> never{false};
    const auto summary = am::fit(*net, sgd, description(0.1), am::FitOptions().steps_per_epoch(20), loss, nullptr,
                                 nullptr, r == 1 ? &stop : &never, hooks);
    steps[static_cast<std::size_t>(r)] = summary.global_step;
    EXPECT_EQ(summary.status, am::FitStatus::kInterrupted);
  });
  ASSERT_EQ(errors[0], "");
  ASSERT_EQ(errors[1], "");
  EXPECT_EQ(steps[0], 5);
  EXPECT_EQ(steps[1], 5);
}

// ---------------------------------------------------------------------------
// Set-up errors.

struct ScopedEnv {
  std::vector<std::string> names{"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"};
  ScopedEnv() {
    for (const auto& n : names) ::unsetenv(n.c_str());
  }
  ~ScopedEnv() {
    for (const auto& n : names) ::unsetenv(n.c_str());
  }
  void set(const char* name, const char* value) { ::setenv(name, value, 1); }
};

std::string env_error() {
  try {
    am::distributed_env_from_environment();
  } catch (const am::DistributedError& e) {
    return e.what();
  }
  return "";
}

TEST(DistributedEnv, ReadsTorchrunsVariables) {
  ScopedEnv scoped;
  EXPECT_FALSE(am::distributed_env_from_environment().has_value());
  scoped.set("RANK", "1");
  scoped.set("WORLD_SIZE", "3");
  scoped.set("MASTER_ADDR", "node7");
  scoped.set("MASTER_PORT", "1234");
  const auto env = am::distributed_env_from_environment();
  ASSERT_TRUE(env.has_value());
  EXPECT_EQ(env->rank, 1);
  EXPECT_EQ(env->world_size, 3);
  EXPECT_EQ(env->local_rank, 1);
  EXPECT_EQ(env->master_addr, "node7");
  EXPECT_EQ(env->master_port, 1234);
}

TEST(DistributedEnv, BadVariablesNameTheVariable) {
  ScopedEnv scoped;
  scoped.set("RANK", "0");
  EXPECT_EQ(env_error(), "RANK is set but WORLD_SIZE is not (both are needed for a distributed run)");
  scoped.set("WORLD_SIZE", "two");
  EXPECT_EQ(env_error(), "WORLD_SIZE must be a whole number in 1..65536, got 'two'");
  scoped.set("WORLD_SIZE", "2");
  scoped.set("RANK", "2");
  EXPECT_EQ(env_error(), "RANK 2 is outside 0..1 (WORLD_SIZE is 2)");
  scoped.set("RANK", "1");
  scoped.set("MASTER_PORT", "70000");
  EXPECT_EQ(env_error(), "MASTER_PORT must be a whole number in 1..65535, got '70000'");
}

TEST(ProcessGroup, MismatchedWorldSizesFailOnEveryRankNamingBoth) {
  const int port = free_port();
  const auto errors = on_ranks(2, [&](int r) {
    am::ProcessGroup group(env_of(r, r == 0 ? 2 : 3, port), am::ProcessGroupOptions().timeout_seconds(10));
  });
  EXPECT_EQ(errors[0], "WORLD_SIZE is 2 on rank 0 but 3 on rank 1");
  EXPECT_EQ(errors[1], "WORLD_SIZE is 3 here but 2 on rank 0");
}

TEST(ProcessGroup, TwoProcessesClaimingOneRankAreTold) {
  const int port = free_port();
  // Threads 1 and 2 both claim rank 1; whichever comes second is refused. The
  // others keep the store (served by rank 0) up until both claims were made.
  std::atomic<int> tried{0};
  const auto errors = on_ranks(3, [&](int t) {
    std::unique_ptr<am::ProcessGroup> group;
    try {
      group = std::make_unique<am::ProcessGroup>(env_of(t == 0 ? 0 : 1, 2, port),
                                                 am::ProcessGroupOptions().timeout_seconds(20));
    } catch (...) {
      ++tried;
      throw;
    }
    ++tried;
    while (tried.load() < 3) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  });
  EXPECT_EQ(errors[0], "");
  const auto refused = errors[1].empty() ? errors[2] : errors[1];
  EXPECT_TRUE(errors[1].empty() != errors[2].empty()) << errors[1] << " / " << errors[2];
  EXPECT_EQ(refused, "RANK 1 is claimed by two processes (each worker needs its own RANK)");
}

TEST(ProcessGroup, AnUnreachableMasterFailsWithinTheTimeout) {
  const int port = free_port();
  const auto t0 = std::chrono::steady_clock::now();
  const auto errors = on_ranks(1, [&](int) {
    am::ProcessGroup group(env_of(1, 2, port), am::ProcessGroupOptions().timeout_seconds(1));
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(contains(errors[0], "cannot reach the master 127.0.0.1:" + std::to_string(port) + " within 1 s"))
      << errors[0];
  EXPECT_LT(seconds, 10.0);
}

TEST(ProcessGroup, APortInUseIsNamed) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = 0;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);
  const auto errors = on_ranks(1, [&](int) {
    am::ProcessGroup group(env_of(0, 2, port), am::ProcessGroupOptions().timeout_seconds(2));
  });
  ::close(fd);
  EXPECT_EQ(errors[0], "cannot serve the rendezvous on 127.0.0.1:" + std::to_string(port) +
                           ": the port is in use (another run on it? set another MASTER_PORT)");
}

TEST(ProcessGroup, AMissingRankIsNamedAfterTheTimeout) {
  const int port = free_port();
  const auto errors = on_ranks(1, [&](int) {
    am::ProcessGroup group(env_of(0, 2, port), am::ProcessGroupOptions().timeout_seconds(1));
  });
  EXPECT_TRUE(contains(errors[0], "rank 1 did not join within 1 s")) << errors[0];
}

TEST(ProcessGroup, CollectivesSumAndGatherOverTcp) {
  const int port = free_port();
  std::vector<torch::Tensor> sums(3), gathered(3);
  const auto errors = on_ranks(3, [&](int r) {
    am::ProcessGroup group(env_of(r, 3, port), am::ProcessGroupOptions().timeout_seconds(20));
    auto t = torch::full({4}, static_cast<double>(r + 1), torch::kFloat64);
    group.all_reduce_sum(t, "a test sum");
    sums[static_cast<std::size_t>(r)] = t;
    gathered[static_cast<std::size_t>(r)] = torch::stack(group.all_gather(torch::tensor({r * 10}), "a gather"));
  });
  for (int r = 0; r < 3; ++r) {
    ASSERT_EQ(errors[static_cast<std::size_t>(r)], "");
    EXPECT_TRUE(torch::equal(sums[static_cast<std::size_t>(r)], torch::full({4}, 6.0, torch::kFloat64)));
    EXPECT_TRUE(torch::equal(gathered[static_cast<std::size_t>(r)].flatten(), torch::tensor({0, 10, 20})));
  }
}

void own_sigpipe_handler(int) {}

// Gloo writes to its peers with writev(2): with SIGPIPE at its default action, a
// write to a peer that has gone ends the process before the collective can fail
// and name the lost rank (seen as a rank ending without a word in `attend launch`).
TEST(ProcessGroup, AWriteToAGonePeerFailsInsteadOfEndingTheProcess) {
  struct sigaction saved {};
  ASSERT_EQ(::sigaction(SIGPIPE, nullptr, &saved), 0);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  ASSERT_EQ(::sigaction(SIGPIPE, &dfl, nullptr), 0);
  {
    am::ProcessGroup group(env_of(0, 1, free_port()), am::ProcessGroupOptions().timeout_seconds(20));
  }
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  ::close(fds[0]);
  const char byte = 'x';
  // At the default action this write would kill the test binary.
  errno = 0;
  EXPECT_EQ(::write(fds[1], &byte, 1), -1);
  EXPECT_EQ(errno, EPIPE);
  ::close(fds[1]);
  // A handler the program installed itself is left alone.
  struct sigaction own {};
  own.sa_handler = own_sigpipe_handler;
  sigemptyset(&own.sa_mask);
  ASSERT_EQ(::sigaction(SIGPIPE, &own, nullptr), 0);
  {
    am::ProcessGroup group(env_of(0, 1, free_port()), am::ProcessGroupOptions().timeout_seconds(20));
  }
  struct sigaction now {};
  ASSERT_EQ(::sigaction(SIGPIPE, nullptr, &now), 0);
  EXPECT_EQ(now.sa_handler, own_sigpipe_handler);
  ::sigaction(SIGPIPE, &saved, nullptr);
}

}  // namespace
