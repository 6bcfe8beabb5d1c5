// Retina: batched extract_glimpses against the per-sample reference loop
// (cv::Mat ROI + cv::resize(INTER_AREA), tests/support/glimpse_reference.h).
//   build/bench/glimpse_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <attend/vision/glimpse.h>

#include <glimpse_reference.h>

#include <benchmark/benchmark.h>
#include <torch/torch.h>

namespace av = attend::vision;

namespace {

struct Setup {
  torch::Tensor images, locations, locations64;
  av::RetinaOptions options;
};

Setup make(std::int64_t side, std::int64_t scales) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  Setup s;
  s.images = torch::rand({128, 1, side, side}, gen);
  // Whole-pixel centres so the reference applies.
  auto centres = torch::randint(0, side + 1, {128, 2}, gen, torch::kFloat64);
  s.locations64 = centres / static_cast<double>(side) * 2.0 - 1.0;
  s.locations = s.locations64.to(torch::kFloat32);
  s.options = av::RetinaOptions().size(12).scales(scales).ratio(2.0);
  return s;
}

void BM_Retina(benchmark::State& state) {
  at::set_num_threads(static_cast<int>(state.range(2)));
  const auto s = make(state.range(0), state.range(1));
  torch::NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(av::extract_glimpses(s.images, s.locations, s.options));
  state.SetItemsProcessed(state.iterations() * 128);
}

void BM_ReferenceLoop(benchmark::State& state) {
  const auto s = make(state.range(0), state.range(1));
  for (auto _ : state) {
    benchmark::DoNotOptimize(attend::testing::reference_glimpses(s.images, s.locations64, s.options));
  }
  state.SetItemsProcessed(state.iterations() * 128);
}

}  // namespace

// Args: image side, scales, intra-op threads. B = 128, g = 12.
BENCHMARK(BM_Retina)->Args({60, 3, 1})->Args({60, 3, 2})->Args({100, 4, 1})->Args({100, 4, 2})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ReferenceLoop)->Args({60, 3, 1})->Args({100, 4, 1})->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
