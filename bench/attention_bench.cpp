// Multi-head attention: ours (batch-first) against torch::nn::MultiheadAttention
// (sequence-first) with the same weights; additive attention at caption-decoding size.
//   OMP_WAIT_POLICY=PASSIVE build/bench/attention_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <attend/attention/additive.h>
#include <attend/attention/multi_head.h>

#include <benchmark/benchmark.h>
#include <torch/torch.h>

namespace aa = attend::attention;

namespace {

constexpr std::int64_t kBatch = 32, kEmbed = 512, kHeads = 8;

// Args: sequence length L, backward (0 = inference under InferenceMode, 1 = forward+backward).
void BM_OursMultiHead(benchmark::State& state) {
  torch::manual_seed(0);
  aa::MultiHeadAttention mha(kEmbed, kHeads);
  const auto l = state.range(0);
  const bool backward = state.range(1) != 0;
  auto x = torch::randn({kBatch, l, kEmbed}, torch::requires_grad(backward));
  for (auto _ : state) {
    if (backward) {
      mha->forward(x, x, x).context.sum().backward();
    } else {
      c10::InferenceMode guard;
      benchmark::DoNotOptimize(mha->forward(x, x, x).context);
    }
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

void BM_TorchMultiHead(benchmark::State& state) {
  torch::manual_seed(0);
  torch::nn::MultiheadAttention mha(kEmbed, kHeads);
  const auto l = state.range(0);
  const bool backward = state.range(1) != 0;
  auto x = torch::randn({l, kBatch, kEmbed}, torch::requires_grad(backward));
  for (auto _ : state) {
    if (backward) {
      std::get<0>(mha->forward(x, x, x)).sum().backward();
    } else {
      c10::InferenceMode guard;
      benchmark::DoNotOptimize(std::get<0>(mha->forward(x, x, x)));
    }
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

// One decoding step of additive attention over 196 regions of 2048-d features
// projected to 512, with the key projection computed once (cached) or every step.
void BM_AdditiveDecodeStep(benchmark::State& state) {
  torch::manual_seed(0);
  aa::AdditiveAttention att(512, 2048, 512);
  c10::InferenceMode guard;
  const auto features = torch::randn({kBatch, 196, 2048});
  const auto query = torch::randn({kBatch, 512});
  const bool cached = state.range(0) != 0;
  const auto projected = att->project_keys(features);
  for (auto _ : state) {
    benchmark::DoNotOptimize(cached ? att->forward_projected(query, projected, features).context
                                    : att->forward(query, features, features).context);
  }
  // Bytes that must be read per step at least: the projected keys and the values.
  state.SetBytesProcessed(state.iterations() * (projected.numel() + features.numel()) * 4);
}

// The same step's compute alone: the scores (tanh of 32 x 196 x 512 sums) with
// one-float values, so almost nothing is read besides the projected keys.
void BM_AdditiveScoresOnly(benchmark::State& state) {
  torch::manual_seed(0);
  c10::InferenceMode guard;
  const auto projected = torch::randn({kBatch, 196, 512}), query = torch::randn({kBatch, 512});
  const auto v = torch::randn({512}), values = torch::randn({kBatch, 196, 1});
  for (auto _ : state) benchmark::DoNotOptimize(aa::additive_attention(query, projected, v, values).context);
}

// The memory-bandwidth limit for the step above: summing the same bytes (projected
// keys and values, 64 MB) once, which is all the step must read.
void BM_ReadBandwidth(benchmark::State& state) {
  c10::InferenceMode guard;
  const auto bytes = torch::randn({kBatch, 196, 512 + 2048});
  for (auto _ : state) benchmark::DoNotOptimize(bytes.sum());
  state.SetBytesProcessed(state.iterations() * bytes.numel() * 4);
}

void Lengths(benchmark::internal::Benchmark* b) {
  for (std::int64_t l : {16, 64, 196, 1024}) {
    for (std::int64_t backward : {0, 1}) b->Args({l, backward});
  }
}

}  // namespace

BENCHMARK(BM_OursMultiHead)->Apply(Lengths)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_TorchMultiHead)->Apply(Lengths)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_AdditiveDecodeStep)->Arg(1)->Arg(0)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_AdditiveScoresOnly)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_ReadBandwidth)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_MAIN();
