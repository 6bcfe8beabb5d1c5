// Beam search (k = 3) for 64 images of 64x64: all images in one batched search (64 x 3
// rows per decoder step) against the same code called for one image at a time. The
// model is untrained, so every caption runs to max_length (12 tokens): both sides do
// the same number of steps. Vocabulary 23 (the words of level-2 object scenes).
//   OMP_WAIT_POLICY=PASSIVE build/bench/caption_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <attend/datasets/parallel.h>
#include <attend/models/beam_search.h>
#include <attend/models/captioner.h>

#include <benchmark/benchmark.h>
#include <malloc.h>
#include <torch/torch.h>

namespace am = attend::models;

namespace {

constexpr std::int64_t kImages = 64;

/// N threads for LibTorch and for OpenBLAS's matrix products, as `attend --threads N`
/// gives (OpenBLAS otherwise keeps one thread per core whatever LibTorch uses).
void use_threads(std::int64_t n) {
  at::set_num_threads(static_cast<int>(n));
  attend::datasets::set_blas_threads(static_cast<int>(n));
}

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
  use_threads(state.range(0));
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
  use_threads(state.range(0));
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
  use_threads(1);
  auto model = make_captioner();
  const auto x = images();
  torch::NoGradGuard g;
  for (auto _ : state) benchmark::DoNotOptimize(model->encode(x).data_ptr());
}
void BM_EncodeOneAtATime(benchmark::State& state) {
  use_threads(1);
  auto model = make_captioner();
  const auto x = images();
  torch::NoGradGuard g;
  for (auto _ : state) {
    for (std::int64_t i = 0; i < kImages; ++i) benchmark::DoNotOptimize(model->encode(x.narrow(0, i, 1)).data_ptr());
  }
}
}  // namespace
void BM_EncodeChunked(benchmark::State& state) {
  use_threads(1);
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

namespace {

/// The search alone over annotations encoded beforehand: the decoder steps on B*k
/// rows (or k rows, image by image), without the encoder both sides share.
void BM_SearchOnly(benchmark::State& state) {
  use_threads(state.range(1));
  auto model = make_captioner();
  torch::NoGradGuard g;
  const auto annotations = model->encode(images());
  const auto search = am::BeamSearchOptions().beam(3).max_length(12);
  const bool batched = state.range(0) == 1;
  for (auto _ : state) {
    if (batched) {
      const auto s = model->search_state(annotations, 3);
      benchmark::DoNotOptimize(am::beam_search(*s, kImages, search).data());
    } else {
      for (std::int64_t i = 0; i < kImages; ++i) {
        const auto s = model->search_state(annotations.narrow(0, i, 1), 3);
        benchmark::DoNotOptimize(am::beam_search(*s, 1, search).data());
      }
    }
  }
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(kImages), benchmark::Counter::kIsIterationInvariantRate);
}

/// One teacher-forced training step (forward, backward, Adam) on 64 captions of 11
/// tokens, the same model and sizes as bench/caption_reference.py (vocabulary 28).
void BM_TeacherForcedStep(benchmark::State& state) {
  use_threads(state.range(0));
  torch::manual_seed(0);
  am::Captioner model(am::CaptionerOptions(28));
  torch::optim::Adam adam(model->parameters(), 1e-3);
  const auto x = images();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(2);
  auto tokens = torch::randint(4, 28, {kImages, 11}, gen, torch::kInt64);
  tokens.select(1, 0).fill_(1);
  tokens.select(1, 10).fill_(2);
  const auto lengths = torch::full({kImages}, 11, torch::kInt64);
  for (auto _ : state) {
    adam.zero_grad();
    model->loss(x, tokens, lengths).total.backward();
    adam.step();
  }
  state.counters["captions/s"] = benchmark::Counter(static_cast<double>(kImages), benchmark::Counter::kIsIterationInvariantRate);
}

/// One decoding step of the soft decoder for `images` images x 3 beams (64 images =
/// 192 rows, or 1 image = 3 rows), through the fused additive kernel (no gradients,
/// float32); with the LSTM cell and the attention alone below, where a step goes.
void BM_DecodingStep(benchmark::State& state) {
  use_threads(state.range(1));
  auto model = make_captioner();
  torch::NoGradGuard g;
  const auto annotations = model->encode(images()).narrow(0, 0, state.range(0));
  const auto projected = model->attention->project_keys(annotations);
  auto [h, c] = model->initial_state(annotations);
  h = h.repeat_interleave(3, 0);
  c = c.repeat_interleave(3, 0);
  const auto tokens = torch::full({h.size(0)}, 5, torch::kInt64);
  for (auto _ : state) benchmark::DoNotOptimize(model->step(annotations, projected, tokens, h, c).logits.data_ptr());
}

/// The floating-point operations of the LSTM cell's matrix products on `rows` rows,
/// 2 x rows x (input + hidden) x 4 hidden (the gates' are not counted), as a rate.
benchmark::Counter lstm_matmul_gflop(const am::Captioner& model, std::int64_t rows) {
  const auto& o = model->lstm->options;
  const auto flop = 2.0 * static_cast<double>(rows * (o.input_size() + o.hidden_size()) * 4 * o.hidden_size());
  return benchmark::Counter(flop * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

/// The 192-row step's LSTM cell alone, one thread.
void BM_DecodingStepLstm(benchmark::State& state) {
  use_threads(1);
  auto model = make_captioner();
  torch::NoGradGuard g;
  const auto rows = kImages * 3;
  const auto input = torch::rand({rows, model->lstm->options.input_size()});
  const auto h = torch::rand({rows, model->lstm->options.hidden_size()});
  const auto c = torch::rand({rows, model->lstm->options.hidden_size()});
  for (auto _ : state) {
    benchmark::DoNotOptimize(std::get<0>(model->lstm->forward(input, std::make_tuple(h, c))).data_ptr());
  }
  state.counters["GFLOP/s"] = lstm_matmul_gflop(model, rows);
}

/// The LSTM cell's arithmetic as one bare matrix product, one thread: [192, input +
/// hidden] x [input + hidden, 4 hidden], the floor under BM_DecodingStepLstm (its
/// GFLOP/s is the counter).
void BM_DecodingStepLstmAsOneMatmul(benchmark::State& state) {
  use_threads(1);
  auto model = make_captioner();
  torch::NoGradGuard g;
  const auto rows = kImages * 3;
  const auto inner = model->lstm->options.input_size() + model->lstm->options.hidden_size();
  const auto outer = 4 * model->lstm->options.hidden_size();
  const auto a = torch::rand({rows, inner});
  const auto b = torch::rand({inner, outer});
  for (auto _ : state) benchmark::DoNotOptimize(torch::mm(a, b).data_ptr());
  state.counters["GFLOP/s"] = lstm_matmul_gflop(model, rows);
}

/// The 192-row step's attention alone (query projection and the fused kernel), one thread.
void BM_DecodingStepAttention(benchmark::State& state) {
  use_threads(1);
  auto model = make_captioner();
  torch::NoGradGuard g;
  const auto annotations = model->encode(images());
  const auto projected = model->attention->project_keys(annotations);
  const auto query = torch::rand({kImages, 3, model->lstm->options.hidden_size()});
  for (auto _ : state) {
    benchmark::DoNotOptimize(model->attention->forward_projected(query, projected, annotations).context.data_ptr());
  }
}

}  // namespace

BENCHMARK(BM_DecodingStepLstm)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DecodingStepLstmAsOneMatmul)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DecodingStepAttention)->Unit(benchmark::kMicrosecond);
// {1 = batched, 0 = one image at a time; threads}
BENCHMARK(BM_SearchOnly)->Args({1, 1})->Args({0, 1})->Args({1, 2})->Args({0, 2})->Unit(benchmark::kMillisecond);
// {threads}
BENCHMARK(BM_TeacherForcedStep)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);
// {images, threads}
BENCHMARK(BM_DecodingStep)->Args({64, 1})->Args({64, 2})->Args({1, 1})->Unit(benchmark::kMicrosecond);

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
