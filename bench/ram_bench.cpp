// RAM training throughput on 60x60 cluttered scenes (T=8, g=12, k=3, batch 128):
// one optimisation step on a fixed batch, and the step including scene generation.
//   OMP_WAIT_POLICY=PASSIVE build/bench/ram_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <attend/datasets/scenes.h>
#include <attend/datasets/source.h>
#include <attend/models/ram.h>
#include <attend/models/registry.h>

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <sys/resource.h>

namespace am = attend::models;
namespace ds = attend::datasets;

namespace {

std::unique_ptr<am::Classifier> make_ram(std::int64_t canvas) {
  auto j = am::RamOptions().glimpses(8).glimpse_size(12).scales(3).to_json();
  j["height"] = canvas;
  j["width"] = canvas;
  return am::make_classifier("ram", j);
}

std::shared_ptr<const ds::SceneGenerator> scenes(std::int64_t canvas) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  ds::Digits digits{torch::randint(0, 256, {1000, 28, 28}, gen, torch::kUInt8), torch::arange(1000) % 10};
  return std::make_shared<const ds::SceneGenerator>(digits, ds::SceneOptions().canvas(canvas).fragments(4), 1);
}

void report_memory(benchmark::State& state) {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  state.counters["peak_rss_MiB"] = static_cast<double>(usage.ru_maxrss) / 1024.0;
}

// Arguments: threads, batch. The batches of 16 and 64 show the part of a step that does
// not shrink with the batch (8 glimpses of small operations and the optimiser step),
// which bounds how far data-parallel training can split a batch of 128.
void BM_RamTrainStep(benchmark::State& state) {
  at::set_num_threads(static_cast<int>(state.range(0)));
  const auto size = state.range(1);
  torch::manual_seed(0);
  auto ram = make_ram(60);
  torch::optim::Adam opt(ram->module().parameters(), 1e-3);
  ds::SceneSource source(scenes(60), ds::SceneMode::kFreshEachEpoch);
  const auto batch = source.get(ds::epoch_batch(1000, size, 1, 0, 0), 0);
  for (auto _ : state) {
    opt.zero_grad();
    ram->loss(batch.images, batch.labels).total.backward();
    opt.step();
  }
  state.SetItemsProcessed(state.iterations() * size);
  report_memory(state);
}

void BM_RamTrainStepWithSceneGeneration(benchmark::State& state) {
  at::set_num_threads(static_cast<int>(state.range(0)));
  torch::manual_seed(0);
  auto ram = make_ram(60);
  torch::optim::Adam opt(ram->module().parameters(), 1e-3);
  ds::SceneSource source(scenes(60), ds::SceneMode::kFreshEachEpoch);
  std::int64_t step = 0;
  for (auto _ : state) {
    const auto batch = source.get(ds::epoch_batch(1000, 128, 1, step / 7, step % 7), step / 7);
    ++step;
    opt.zero_grad();
    ram->loss(batch.images, batch.labels).total.backward();
    opt.step();
  }
  state.SetItemsProcessed(state.iterations() * 128);
  report_memory(state);
}

void BM_SceneGeneration(benchmark::State& state) {
  ds::SceneSource source(scenes(60), ds::SceneMode::kFreshEachEpoch);
  std::int64_t epoch = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(source.get(ds::epoch_batch(1000, 128, 1, epoch, 0), epoch));
    ++epoch;
  }
  state.SetItemsProcessed(state.iterations() * 128);
}

}  // namespace

BENCHMARK(BM_RamTrainStep)
    ->Args({1, 128})
    ->Args({2, 128})
    ->Args({1, 64})
    ->Args({1, 16})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_RamTrainStepWithSceneGeneration)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SceneGeneration)->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
