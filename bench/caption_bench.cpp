// Beam search (k = 3) for 64 images of 64x64: all images in one batched search (64 x 3
// rows per decoder step) against the same code called for one image at a time. The
// model is untrained, so every caption runs to max_length (12 tokens): both sides do
// the same number of steps. Vocabulary 23 (the words of level-2 object scenes).
//   OMP_WAIT_POLICY=PASSIVE build/bench/caption_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <attend/models/captioner.h>

#include <benchmark/benchmark.h>
#include <malloc.h>
#include <torch/torch.h>

namespace am = attend::models;

namespace {

constexpr std::int64_t kImages = 64;

am::Captioner make_captioner() {
  torch::manual_seed(0);
  am::Captioner model(am::CaptionerOptions(23));
  model->eval();
  return model;
}

torch::Tensor images() {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  return torch::rand({kImages, 1, 64, 64}, gen);
}

void BM_BeamSearchBatched(benchmark::State& state) {
  at::set_num_threads(static_cast<int>(state.range(0)));
  auto model = make_captioner();
  const auto x = images();
  const auto search = am::BeamSearchOptions().beam(state.range(1)).max_length(12);
  for (auto _ : state) {
    auto captions = model->decode(x, search);
    benchmark::DoNotOptimize(captions.data());
  }
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(kImages), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_BeamSearchOneImageAtATime(benchmark::State& state) {
  at::set_num_threads(static_cast<int>(state.range(0)));
  auto model = make_captioner();
  const auto x = images();
  const auto search = am::BeamSearchOptions().beam(state.range(1)).max_length(12);
  for (auto _ : state) {
    for (std::int64_t i = 0; i < kImages; ++i) {
      auto captions = model->decode(x.narrow(0, i, 1), search);
      benchmark::DoNotOptimize(captions.data());
    }
  }
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(kImages), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

// {threads, beam}
BENCHMARK(BM_BeamSearchBatched)->Args({1, 3})->Args({2, 3})->Args({1, 1})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_BeamSearchOneImageAtATime)->Args({1, 3})->Args({2, 3})->Args({1, 1})->Unit(benchmark::kMillisecond);


namespace {
void BM_EncodeBatched(benchmark::State& state) {
  at::set_num_threads(1);
  auto model = make_captioner();
  const auto x = images();
  torch::NoGradGuard g;
  for (auto _ : state) benchmark::DoNotOptimize(model->encode(x).data_ptr());
}
void BM_EncodeOneAtATime(benchmark::State& state) {
  at::set_num_threads(1);
  auto model = make_captioner();
  const auto x = images();
  torch::NoGradGuard g;
  for (auto _ : state) {
    for (std::int64_t i = 0; i < kImages; ++i) benchmark::DoNotOptimize(model->encode(x.narrow(0, i, 1)).data_ptr());
  }
}
}  // namespace
void BM_EncodeChunked(benchmark::State& state) {
  at::set_num_threads(1);
  auto model = make_captioner();
  const auto x = images();
  torch::NoGradGuard g;
  const auto chunk = state.range(0);
  for (auto _ : state) {
    for (std::int64_t i = 0; i < kImages; i += chunk) benchmark::DoNotOptimize(model->encoder->forward(x.narrow(0, i, chunk)).data_ptr());
  }
}
BENCHMARK(BM_EncodeChunked)->Arg(1)->Arg(8)->Arg(64)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EncodeBatched)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EncodeOneAtATime)->Unit(benchmark::kMillisecond);

// The attend binary's allocator settings (apps/src/main.cpp), so the figures are what
// users of the CLI get.
int main(int argc, char** argv) {
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 1 << 30);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
