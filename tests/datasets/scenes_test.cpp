#include <attend/datasets/parallel.h>
#include <attend/datasets/rng.h>
#include <attend/datasets/scenes.h>
#include <attend/datasets/source.h>

#include <torch/torch.h>

#include <gtest/gtest.h>
#include <test_support.h>

#include <sched.h>

#include <filesystem>
#include <fstream>
#include <set>

namespace ds = attend::datasets;
using torch::indexing::Slice;

namespace {

/// Synthetic digits: each is a distinct random blob so provenance can be checked.
ds::Digits make_digits(std::int64_t n, std::int64_t side = 12, std::uint64_t seed = 5) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto images = torch::randint(1, 256, {n, side, side}, gen, torch::kUInt8);
  auto labels = torch::arange(n, torch::kInt64) % 10;
  return {images, labels};
}

/// Plain reference for a translated scene: the digit pasted at its box into a
/// blank canvas with tensor slicing (no code shared with the generator's loop).
torch::Tensor compose_reference(const ds::Digits& digits, const ds::SceneBatch& batch, std::int64_t i,
                                std::int64_t canvas) {
  auto scene = torch::zeros({canvas, canvas}, torch::kUInt8);
  const auto x = batch.boxes[i][0].item<std::int64_t>();
  const auto y = batch.boxes[i][1].item<std::int64_t>();
  const auto digit = digits.images[batch.digit_index[i].item<std::int64_t>()];
  scene.index_put_({Slice(y, y + digit.size(0)), Slice(x, x + digit.size(1))}, digit);
  return scene;
}

}  // namespace

TEST(Rng, MatchesTheSplitMix64ReferenceSequence) {
  ds::Rng rng(0);
  EXPECT_EQ(rng.next(), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(rng.next(), 0x6e789e6aa1b965f4ULL);
}

TEST(Rng, UniformIntCoversTheRangeEvenly) {
  ds::Rng rng(123);
  std::vector<int> counts(7, 0);
  for (int i = 0; i < 70000; ++i) {
    const auto v = rng.uniform_int(7);
    ASSERT_GE(v, 0);
    ASSERT_LT(v, 7);
    ++counts[static_cast<size_t>(v)];
  }
  for (int c : counts) EXPECT_NEAR(c, 10000, 400);
}

TEST(SceneGenerator, SameSeedGivesIdenticalScenesAndOtherSeedsDiffer) {
  const auto digits = make_digits(20);
  const auto opts = ds::SceneOptions().canvas(40).fragments(4).fragment_size(6);
  const ds::SceneGenerator a(digits, opts, 7), b(digits, opts, 7), c(digits, opts, 8);
  const auto sa = a.generate_all(), sb = b.generate_all(), sc = c.generate_all();
  EXPECT_TRUE(torch::equal(sa.images, sb.images));
  EXPECT_TRUE(torch::equal(sa.boxes, sb.boxes));
  EXPECT_FALSE(torch::equal(sa.images, sc.images));
  // A scene depends on its index only, not on which other scenes share the batch.
  const auto single = a.generate({13});
  EXPECT_TRUE(torch::equal(single.images[0], sa.images[13]));
}

// LibTorch 1.13's at::parallel_for is inline OpenMP: it forks only in code built with
// -fopenmp. The build adds it (CMakeLists.txt); without it the library's count is 1.
TEST(ParallelFor, SplitsWorkAcrossThreadsInAttendsLibraries) {
  EXPECT_EQ(attend::testing::with_threads(1, [] { return ds::parallel_for_threads(); }), 1U);
  EXPECT_EQ(attend::testing::with_threads(2, [] { return ds::parallel_for_threads(); }), 2U);
  EXPECT_EQ(attend::testing::with_threads(2, [] { return ds::parallel_for_threads(1); }), 1U) << "one item";
  EXPECT_THROW(ds::parallel_for_threads(0), c10::Error);
}

TEST(AvailableCores, CountsTheAffinityMaskAndTheCgroupQuota) {
  // A CFS quota: ceil(quota / period), never above the CPUs nor below 1.
  EXPECT_EQ(ds::cores_under_quota(150000, 100000, 4), 2);
  EXPECT_EQ(ds::cores_under_quota(100000, 100000, 4), 1);
  EXPECT_EQ(ds::cores_under_quota(20000, 100000, 4), 1) << "a fifth of a core is still one thread";
  EXPECT_EQ(ds::cores_under_quota(800000, 100000, 4), 4) << "more quota than CPUs";
  EXPECT_EQ(ds::cores_under_quota(-1, 100000, 3), 3) << "v1's -1: no quota";
  EXPECT_EQ(ds::cores_under_quota(150000, 100000, 0), 1);
  EXPECT_EQ(ds::cores_under_cpu_max("max 100000", 6), 6);
  EXPECT_EQ(ds::cores_under_cpu_max("250000 100000\n", 6), 3);
  EXPECT_EQ(ds::cores_under_cpu_max("250000x 100000", 6), 6) << "malformed: no quota";
  EXPECT_EQ(ds::cores_under_cpu_max("", 6), 6);

  cpu_set_t all;
  CPU_ZERO(&all);
  ASSERT_EQ(::sched_getaffinity(0, sizeof(all), &all), 0);
  const int cores = ds::available_cores();
  EXPECT_GE(cores, 1);
  EXPECT_LE(cores, CPU_COUNT(&all));
  // Confined to one CPU (as `taskset -c <cpu>` does), the process has one core, whatever
  // the machine has.
  int first = 0;
  while (!CPU_ISSET(first, &all)) ++first;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  ASSERT_EQ(::sched_setaffinity(0, sizeof(one), &one), 0);
  const int confined = ds::available_cores();
  ASSERT_EQ(::sched_setaffinity(0, sizeof(all), &all), 0);
  EXPECT_EQ(confined, 1);
  EXPECT_EQ(ds::available_cores(), cores) << "the mask put back";
}

// The quota files of a cgroup and of the cgroups above it, as the kernel lays them out
// (cgroup v2 under the mount point, v1 under its cpu controller's mount).
TEST(AvailableCores, TheTightestQuotaOverTheCgroupChainCounts) {
  const attend::testing::TempDir root;
  auto write = [&](const std::string& dir, const std::string& file, const std::string& text) {
    std::filesystem::create_directories(root.path() / dir);
    std::ofstream(root.path() / dir / file) << text << "\n";
  };
  const auto r = root.path().string();
  EXPECT_EQ(ds::cores_under_cgroup_quota("0::/app.slice/job\n", r, 8), 8) << "no quota files";
  write("", "cpu.max", "max 100000");
  write("app.slice", "cpu.max", "300000 100000");  // a slice's CPUQuota=300%
  write("app.slice/job", "cpu.max", "max 100000");
  EXPECT_EQ(ds::cores_under_cgroup_quota("0::/app.slice/job\n", r, 8), 3) << "the parent slice's quota";
  EXPECT_EQ(ds::cores_under_cgroup_quota("0::/app.slice/job\n", r, 2), 2) << "never above the CPUs";
  EXPECT_EQ(ds::cores_under_cgroup_quota("0::/other\n", r, 8), 8) << "a cgroup outside the slice";
  write("app.slice/job", "cpu.max", "150000 100000");
  EXPECT_EQ(ds::cores_under_cgroup_quota("0::/app.slice/job\n", r, 8), 2) << "its own, tighter, rounded up";
  EXPECT_EQ(ds::cores_under_cgroup_quota("", r, 8), 8) << "no cgroup line: the root's quota only";
  // cgroup v1: "-1" is no quota; the cpu controller may be mounted as cpu,cpuacct.
  write("cpu,cpuacct/docker", "cpu.cfs_quota_us", "-1");
  write("cpu,cpuacct/docker", "cpu.cfs_period_us", "100000");
  write("cpu,cpuacct/docker/c1", "cpu.cfs_quota_us", "50000");
  write("cpu,cpuacct/docker/c1", "cpu.cfs_period_us", "100000");
  const std::string v1 = "12:memory:/docker/c1\n4:cpu,cpuacct:/docker/c1\n0::/\n";
  EXPECT_EQ(ds::cores_under_cgroup_quota(v1, r, 8), 1) << "half a core is one thread";
  EXPECT_EQ(ds::cores_under_cgroup_quota("4:cpu,cpuacct:/docker\n", r, 8), 8) << "-1 above it: no quota";
  write("cpu,cpuacct/docker/c1", "cpu.cfs_quota_us", "garbage");
  EXPECT_EQ(ds::cores_under_cgroup_quota(v1, r, 8), 8) << "an unreadable quota is no quota";
}

TEST(SceneGenerator, ScenesDoNotDependOnTheThreadCount) {
  const auto digits = make_digits(50);
  const ds::SceneGenerator gen(digits, ds::SceneOptions().canvas(40).fragments(4).fragment_size(6), 3);
  const auto one = attend::testing::with_threads(1, [&] { return gen.generate_all(-1, 2); });
  const auto two = attend::testing::with_threads(2, [&] { return gen.generate_all(-1, 2); });
  EXPECT_TRUE(torch::equal(one.images, two.images));
  EXPECT_TRUE(torch::equal(one.boxes, two.boxes));
  EXPECT_TRUE(torch::equal(one.fragment_boxes, two.fragment_boxes));
  EXPECT_TRUE(torch::equal(one.labels, two.labels));
  EXPECT_TRUE(torch::equal(one.digit_index, two.digit_index));
  EXPECT_TRUE(torch::equal(one.fragment_source, two.fragment_source));
}

TEST(SceneGenerator, EpochsGiveFreshPositions) {
  const auto digits = make_digits(30);
  const ds::SceneGenerator g(digits, ds::SceneOptions().canvas(60), 3);
  const auto e0 = g.generate_all(-1, 0), e1 = g.generate_all(-1, 1);
  EXPECT_TRUE(torch::equal(e0.labels, e1.labels));
  EXPECT_GT((e0.boxes != e1.boxes).any(1).sum().item<std::int64_t>(), 20);
}

TEST(SceneGenerator, TranslatedSceneIsTheDigitOnABlankCanvas) {
  const auto digits = make_digits(15, 12);
  const std::int64_t canvas = 30;
  const ds::SceneGenerator g(digits, ds::SceneOptions().canvas(canvas), 11);
  const auto batch = g.generate_all(45);  // more scenes than digits: digit i mod N
  ASSERT_EQ(batch.images.sizes(), (std::vector<std::int64_t>{45, canvas, canvas}));
  for (std::int64_t i = 0; i < 45; ++i) {
    EXPECT_EQ(batch.digit_index[i].item<std::int64_t>(), i % 15);
    EXPECT_EQ(batch.labels[i].item<std::int64_t>(), digits.labels[i % 15].item<std::int64_t>());
    const auto x = batch.boxes[i][0].item<std::int64_t>(), y = batch.boxes[i][1].item<std::int64_t>();
    ASSERT_GE(x, 0);
    ASSERT_GE(y, 0);
    ASSERT_LE(x + 12, canvas);
    ASSERT_LE(y + 12, canvas);
    EXPECT_TRUE(torch::equal(batch.images[i], compose_reference(digits, batch, i, canvas)));
  }
}

TEST(SceneGenerator, ClutterComesFromOtherDigitsAndNeverHidesTheDigit) {
  const std::int64_t n = 12, side = 10, canvas = 36, k = 5, f = 4;
  const auto digits = make_digits(n, side);
  const ds::SceneGenerator g(digits, ds::SceneOptions().canvas(canvas).fragments(k).fragment_size(f), 21);
  const auto batch = g.generate_all(48);
  for (std::int64_t i = 0; i < 48; ++i) {
    const auto digit = batch.digit_index[i].item<std::int64_t>();
    const auto scene = batch.images[i];
    const auto x = batch.boxes[i][0].item<std::int64_t>(), y = batch.boxes[i][1].item<std::int64_t>();
    ASSERT_LE(x + side, canvas);
    ASSERT_LE(y + side, canvas);
    // Max composition: the digit's pixels are all still at least as bright.
    const auto window = scene.index({Slice(y, y + side), Slice(x, x + side)});
    EXPECT_TRUE((window >= digits.images[digit]).all().item<bool>());
    auto covered = torch::zeros({canvas, canvas}, torch::kBool);
    covered.index_put_({Slice(y, y + side), Slice(x, x + side)}, true);
    for (std::int64_t j = 0; j < k; ++j) {
      const auto source = batch.fragment_source[i][j].item<std::int64_t>();
      EXPECT_NE(source, digit) << "scene " << i << " fragment " << j << " cut from its own digit";
      ASSERT_GE(source, 0);
      ASSERT_LT(source, n);
      const auto fb = batch.fragment_boxes[i][j];
      const auto px = fb[0].item<std::int64_t>(), py = fb[1].item<std::int64_t>();
      ASSERT_LE(px + f, canvas);
      ASSERT_LE(py + f, canvas);
      // The fragment is some F x F crop of its source digit: the pasted window is
      // at least as bright as one of the source's crops.
      const auto pasted = scene.index({Slice(py, py + f), Slice(px, px + f)});
      bool found = false;
      for (std::int64_t cy = 0; cy + f <= side && !found; ++cy) {
        for (std::int64_t cx = 0; cx + f <= side && !found; ++cx) {
          const auto crop = digits.images[source].index({Slice(cy, cy + f), Slice(cx, cx + f)});
          found = (pasted >= crop).all().item<bool>();
        }
      }
      EXPECT_TRUE(found) << "scene " << i << " fragment " << j;
      covered.index_put_({Slice(py, py + f), Slice(px, px + f)}, true);
    }
    // Nothing appears outside the digit and the fragments.
    EXPECT_EQ(scene.masked_select(covered.logical_not()).sum().item<std::int64_t>(), 0);
  }
}

TEST(SceneGenerator, RejectsImpossibleOptions) {
  const auto digits = make_digits(5, 12);
  EXPECT_THROW(ds::SceneGenerator(digits, ds::SceneOptions().canvas(11), 1), c10::Error);
  EXPECT_THROW(ds::SceneGenerator(digits, ds::SceneOptions().fragments(-1), 1), c10::Error);
  EXPECT_THROW(ds::SceneGenerator(digits, ds::SceneOptions().fragments(2).fragment_size(13), 1), c10::Error);
  EXPECT_THROW(ds::SceneGenerator(make_digits(1, 12), ds::SceneOptions().fragments(2), 1), c10::Error);
}

TEST(SceneGenerator, KeepsChannelsOfColourDigits) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(9);
  ds::Digits digits{torch::randint(1, 256, {4, 8, 8, 3}, gen, torch::kUInt8), torch::arange(4, torch::kInt64)};
  const ds::SceneGenerator g(digits, ds::SceneOptions().canvas(20), 2);
  const auto batch = g.generate_all();
  ASSERT_EQ(batch.images.sizes(), (std::vector<std::int64_t>{4, 20, 20, 3}));
  const auto x = batch.boxes[2][0].item<std::int64_t>(), y = batch.boxes[2][1].item<std::int64_t>();
  EXPECT_TRUE(torch::equal(batch.images[2].index({Slice(y, y + 8), Slice(x, x + 8)}), digits.images[2]));
}

TEST(SceneDataset, TrainingScenesChangeWithTheEpochAndTestScenesDoNot) {
  const auto gen = std::make_shared<const ds::SceneGenerator>(make_digits(16), ds::SceneOptions().canvas(32), 4);
  ds::SceneDataset train(gen, ds::SceneMode::kFreshEachEpoch), test(gen, ds::SceneMode::kFixed);
  ds::SceneDataset train_copy = train;  // as a data loader holds it
  const std::vector<size_t> idx{0, 5, 9};
  const auto t0 = train_copy.get_batch(idx), f0 = test.get_batch(idx);
  train.set_epoch(1);
  test.set_epoch(1);
  const auto t1 = train_copy.get_batch(idx), f1 = test.get_batch(idx);
  EXPECT_EQ(t0.data.sizes(), (std::vector<std::int64_t>{3, 1, 32, 32}));
  EXPECT_EQ(t0.data.scalar_type(), torch::kFloat32);
  EXPECT_LE(t0.data.max().item<float>(), 1.0f);
  EXPECT_GE(t0.data.min().item<float>(), 0.0f);
  EXPECT_FALSE(torch::equal(t0.data, t1.data));
  EXPECT_TRUE(torch::equal(f0.data, f1.data));
  EXPECT_TRUE(torch::equal(t0.target, t1.target));
  EXPECT_THROW(test.get_batch(std::vector<size_t>{16}), c10::Error);
}

TEST(EpochBatch, EachEpochVisitsEveryIndexOnceInASeededOrder) {
  std::vector<std::int64_t> seen;
  for (std::int64_t step = 0; step < 4; ++step) {
    const auto b = ds::epoch_batch(10, 3, 7, 2, step);
    EXPECT_EQ(static_cast<std::int64_t>(b.size()), step < 3 ? 3 : 1);
    seen.insert(seen.end(), b.begin(), b.end());
  }
  auto sorted = seen;
  std::sort(sorted.begin(), sorted.end());
  for (std::int64_t i = 0; i < 10; ++i) EXPECT_EQ(sorted[static_cast<size_t>(i)], i);
  EXPECT_EQ(ds::epoch_batch(10, 3, 7, 2, 1), ds::epoch_batch(10, 3, 7, 2, 1));
  EXPECT_NE(ds::epoch_batch(10, 10, 7, 2, 0), ds::epoch_batch(10, 10, 7, 3, 0));
  EXPECT_THROW(ds::epoch_batch(10, 3, 7, 2, 4), c10::Error);
}

TEST(ImageSources, SubsetsAndScenesServeFloatBatches) {
  const auto digits = make_digits(20, 12);
  auto all = std::make_shared<const ds::DigitsSource>(digits);
  const ds::SubsetSource tail(all, 15, 5);
  const auto batch = tail.get({0, 4}, 0);
  EXPECT_EQ(batch.images.sizes(), (std::vector<std::int64_t>{2, 1, 12, 12}));
  EXPECT_EQ(batch.labels[1].item<std::int64_t>(), digits.labels[19].item<std::int64_t>());
  EXPECT_TRUE(torch::allclose(batch.images[0][0], digits.images[15].to(torch::kFloat32) / 255.0));
  EXPECT_THROW(tail.get({5}, 0), c10::Error);
  EXPECT_THROW(ds::SubsetSource(all, 15, 6), c10::Error);
  auto gen = std::make_shared<const ds::SceneGenerator>(digits, ds::SceneOptions().canvas(30).fragments(2), 3);
  const ds::SceneSource fresh(gen, ds::SceneMode::kFreshEachEpoch), fixed(gen, ds::SceneMode::kFixed);
  EXPECT_EQ(fresh.height(), 30);
  EXPECT_FALSE(torch::equal(fresh.get({1, 2}, 0).images, fresh.get({1, 2}, 1).images));
  EXPECT_TRUE(torch::equal(fixed.get({1, 2}, 0).images, fixed.get({1, 2}, 5).images));
}

TEST(ShiftedSource, TranslatesEachImageByItsDrawnShiftWithZerosShiftedIn) {
  // Distinct pixel values, so a wrong offset cannot go unnoticed.
  const auto images = (torch::arange(3 * 9 * 7) % 251 + 1).to(torch::kUInt8).reshape({3, 9, 7});
  auto base = std::make_shared<const ds::DigitsSource>(ds::Digits{images, torch::tensor({4, 5, 6}, torch::kInt64)});
  const ds::ShiftedSource shifted(base, 3, 11);
  std::set<std::int64_t> seen;
  for (std::int64_t epoch = 0; epoch < 20; ++epoch) {
    const auto batch = shifted.get({2, 0, 1}, epoch);
    const auto plain = base->get({2, 0, 1}, epoch);
    EXPECT_TRUE(torch::equal(batch.labels, plain.labels));
    for (std::int64_t i = 0; i < 3; ++i) {
      const auto [dx, dy] = shifted.shift(std::vector<std::int64_t>{2, 0, 1}[i], epoch);
      ASSERT_TRUE(dx >= -3 && dx <= 3 && dy >= -3 && dy <= 3);
      seen.insert(dx), seen.insert(dy);
      for (std::int64_t y = 0; y < 9; ++y) {
        for (std::int64_t x = 0; x < 7; ++x) {
          const auto sy = y - dy, sx = x - dx;
          const float expected = sy >= 0 && sy < 9 && sx >= 0 && sx < 7 ? plain.images[i][0][sy][sx].item<float>() : 0.0f;
          ASSERT_EQ(batch.images[i][0][y][x].item<float>(), expected) << "epoch " << epoch << " item " << i;
        }
      }
    }
  }
  EXPECT_EQ(seen.size(), 7u) << "every shift in [-3, 3] occurs";
  // A pure function of (index, epoch): the same again, and another epoch differs.
  EXPECT_TRUE(torch::equal(shifted.get({0, 1, 2}, 4).images, shifted.get({0, 1, 2}, 4).images));
  EXPECT_FALSE(torch::equal(shifted.get({0, 1, 2}, 4).images, shifted.get({0, 1, 2}, 5).images));
  EXPECT_TRUE(torch::equal(ds::ShiftedSource(base, 0, 11).get({0, 1}, 3).images, base->get({0, 1}, 3).images));
  EXPECT_THROW(ds::ShiftedSource(base, 7, 11), c10::Error) << "shift as wide as the image";
  EXPECT_THROW(ds::ShiftedSource(base, -1, 11), c10::Error);
}

TEST(WarpedSource, RotatesAndScalesAboutTheCentreLikeANaiveBilinearLoop) {
  const auto images = torch::randint(0, 256, {4, 10, 14}, torch::kInt64).to(torch::kUInt8);
  auto base = std::make_shared<const ds::DigitsSource>(ds::Digits{images, torch::arange(4)});
  const ds::WarpedSource warped(base, 30.0, 0.2, 5);
  const std::vector<std::int64_t> indices{3, 1};
  const auto out = warped.get(indices, 2).images, in = base->get(indices, 2).images;
  const double h = 10, w = 14;
  auto pixel = [&](std::int64_t i, double y, double x) {  // bilinear, zeros outside
    const auto y0 = static_cast<std::int64_t>(std::floor(y)), x0 = static_cast<std::int64_t>(std::floor(x));
    double sum = 0;
    for (std::int64_t dy = 0; dy < 2; ++dy) {
      for (std::int64_t dx = 0; dx < 2; ++dx) {
        const auto yy = y0 + dy, xx = x0 + dx;
        if (yy < 0 || yy >= 10 || xx < 0 || xx >= 14) continue;
        sum += (dy ? y - y0 : 1 - (y - y0)) * (dx ? x - x0 : 1 - (x - x0)) * in[i][0][yy][xx].item<double>();
      }
    }
    return sum;
  };
  for (std::int64_t i = 0; i < 2; ++i) {
    const auto [degrees, scale] = warped.warp(indices[i], 2);
    EXPECT_TRUE(std::abs(degrees) <= 30 && scale >= 0.8 && scale <= 1.2);
    const double a = degrees * M_PI / 180, c = std::cos(a), s = std::sin(a);
    for (std::int64_t y = 0; y < 10; ++y) {
      for (std::int64_t x = 0; x < 14; ++x) {
        const double ox = x + 0.5 - w / 2, oy = y + 0.5 - h / 2;
        const double ix = (c * ox - s * oy) / scale + w / 2 - 0.5, iy = (s * ox + c * oy) / scale + h / 2 - 0.5;
        ASSERT_NEAR(out[i][0][y][x].item<double>(), pixel(i, iy, ix), 1e-4) << "item " << i << " at " << x << "," << y;
      }
    }
  }
  // Counter-clockwise on screen: turned by about a quarter, a point right of the
  // centre goes up.
  auto dot = torch::zeros({40, 10, 14}, torch::kUInt8);
  dot.index_put_({Slice(), 4, 11}, 255);  // 4 px right of the centre (7, 5), on the row above it
  const ds::WarpedSource turning(std::make_shared<const ds::DigitsSource>(ds::Digits{dot, torch::arange(40)}), 180.0,
                                 0.0, 5);
  int checked = 0;
  for (std::int64_t index = 0; index < 40; ++index) {
    const auto [degrees, scale] = turning.warp(index, 0);
    if (std::abs(degrees - 90) > 30) continue;
    ++checked;
    const auto peak = turning.get({index}, 0).images[0][0].argmax().item<std::int64_t>();
    // (4.5, -0.5) from the centre turned on screen: [[c, s], [-s, c]] (x, y) with y down.
    const double a = degrees * M_PI / 180, x = std::cos(a) * 4.5 - std::sin(a) * 0.5,
                 y = -std::sin(a) * 4.5 - std::cos(a) * 0.5;
    EXPECT_LT(peak / 14, 3) << "moved up, angle " << degrees;
    EXPECT_LE(std::abs(peak / 14 - (y + 4.5)), 1.0) << "angle " << degrees;
    EXPECT_LE(std::abs(peak % 14 - (x + 6.5)), 1.0) << "angle " << degrees;
  }
  EXPECT_GT(checked, 0);
  EXPECT_TRUE(torch::equal(ds::WarpedSource(base, 0, 0, 5).get({0, 1}, 3).images, base->get({0, 1}, 3).images));
  EXPECT_THROW(ds::WarpedSource(base, 200, 0, 5), c10::Error);
  EXPECT_THROW(ds::WarpedSource(base, 10, 1.0, 5), c10::Error);
}
