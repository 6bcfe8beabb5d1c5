// Saliency maps on a ResNet-18-sized TorchScript model (random weights, written by
// bench/make_resnet18.py), 224x224 inputs, target layer4 ([B,512,7,7]), two intra-op
// threads, at batch 1 and 8: the forward pass alone (SaliencyModel::logits), Grad-CAM,
// Grad-CAM++ and Score-CAM (64 masked inputs per pass) through compute_saliency, each
// explaining the top class. The counter ms/frame is the wall time of the timed loop
// over iterations x batch. The Parts benchmarks split Grad-CAM's time: the split
// forward with and without autograd recording, and the post-processing alone.
//   /usr/bin/python3 bench/make_resnet18.py /tmp/r18
//   OMP_WAIT_POLICY=PASSIVE build/bench/saliency_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// ATTEND_RESNET18 names form (a) (default /tmp/r18/resnet18_seq.pt), ATTEND_RESNET18_TUPLED
// form (b) (default /tmp/r18/resnet18_tupled.pt, method forward_with_activations).
#include <attend/models/saliency.h>
#include <attend/models/scripted_model.h>

#include <ATen/CPUGeneratorImpl.h>
#include <benchmark/benchmark.h>
#include <malloc.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>

namespace am = attend::models;

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kThreads = 2;
constexpr std::int64_t kSide = 224;
constexpr std::int64_t kScoreCamBatch = 64;  ///< masked inputs per Score-CAM pass

std::string env_or(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

/// Form (a) or form (b) of the ResNet-18, opened once per process; nullptr (and the
/// benchmark skipped with the reason) when the file is missing.
am::SaliencyModel* model_or_skip(benchmark::State& state, bool tupled) {
  static std::map<bool, std::unique_ptr<am::SaliencyModel>> opened;
  const auto path = tupled ? env_or("ATTEND_RESNET18_TUPLED", "/tmp/r18/resnet18_tupled.pt")
                           : env_or("ATTEND_RESNET18", "/tmp/r18/resnet18_seq.pt");
  if (!std::filesystem::exists(path)) {
    const std::string reason = "no model at " + path + " (write it with /usr/bin/python3 bench/make_resnet18.py " +
                               std::filesystem::path(path).parent_path().string() + ", or set " +
                               (tupled ? "ATTEND_RESNET18_TUPLED" : "ATTEND_RESNET18") + ")";
    state.SkipWithError(reason.c_str());
    return nullptr;
  }
  auto& model = opened[tupled];
  if (!model) {
    auto options = am::ScriptedModelOptions(path);
    if (tupled) options.method("forward_with_activations");
    model = am::open_scripted_model(options);
  }
  return model.get();
}

std::string target_layer(bool tupled) { return tupled ? "2" : "layer4"; }

torch::Tensor frames(std::int64_t batch) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  return torch::rand({batch, 3, kSide, kSide}, gen);
}

/// Runs `warm_up` (or else `step`) once untimed (oneDNN primitives, allocator), then
/// `step` in the timed loop, and sets ms/frame from the loop's wall time.
void run(benchmark::State& state, std::int64_t batch, const std::function<void()>& step,
         const std::function<void()>& warm_up = {}) {
  at::set_num_threads(kThreads);
  warm_up ? warm_up() : step();
  const auto t0 = Clock::now();
  for (auto _ : state) step();
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  state.counters["ms/frame"] = ms / static_cast<double>(state.iterations() * batch);
}

void BM_Forward(benchmark::State& state) {
  auto* model = model_or_skip(state, false);
  if (model == nullptr) return;
  const auto x = frames(state.range(0));
  run(state, state.range(0), [&] { benchmark::DoNotOptimize(model->logits(x).data_ptr()); });
}

/// range(0) = frames per batch; for Score-CAM range(1) = masked inputs per pass.
void saliency(benchmark::State& state, am::SaliencyMethod method, bool tupled = false) {
  auto* model = model_or_skip(state, tupled);
  if (model == nullptr) return;
  const auto x = frames(state.range(0));
  const bool score_cam = method == am::SaliencyMethod::kScoreCam;
  const auto masked = score_cam ? state.range(1) : kScoreCamBatch;
  const auto options = am::SaliencyOptions().method(method).layers({target_layer(tupled)}).batch(masked);
  // Score-CAM's one iteration is warmed up by a masked-batch-sized forward only.
  std::function<void()> warm_up;
  if (score_cam) warm_up = [&] { model->logits(frames(masked)); };
  run(
      state, state.range(0),
      [&] { benchmark::DoNotOptimize(am::compute_saliency(*model, x, {}, options).maps.data_ptr()); }, warm_up);
}

void BM_GradCam(benchmark::State& state) { saliency(state, am::SaliencyMethod::kGradCam); }
void BM_GradCamPlusPlus(benchmark::State& state) { saliency(state, am::SaliencyMethod::kGradCamPlusPlus); }
void BM_ScoreCam(benchmark::State& state) { saliency(state, am::SaliencyMethod::kScoreCam); }
/// Form (b): the whole forward is recorded (the input requires grad), backward still
/// stops at layer4's output.
void BM_GradCamMethodForm(benchmark::State& state) { saliency(state, am::SaliencyMethod::kGradCam, true); }

/// Grad-CAM's parts: the split forward to the logits without (range 1 = 0) or with
/// (1) autograd recording after layer4.
void BM_PartsSplitForward(benchmark::State& state) {
  auto* model = model_or_skip(state, false);
  if (model == nullptr) return;
  const auto x = frames(state.range(0));
  const bool track = state.range(1) == 1;
  run(state, state.range(0),
      [&] { benchmark::DoNotOptimize(model->forward(x, {"layer4"}, track).logits.data_ptr()); });
}

/// Grad-CAM's parts: tracked split forward + gradient of the top-class scores with
/// respect to layer4 (no raw map, no post-processing).
void BM_PartsForwardAndGradient(benchmark::State& state) {
  auto* model = model_or_skip(state, false);
  if (model == nullptr) return;
  const auto x = frames(state.range(0));
  run(state, state.range(0), [&] {
    auto split = model->forward(x, {"layer4"}, true);
    const auto top = split.logits.detach().argmax(1, /*keepdim=*/true);
    const auto grads = torch::autograd::grad({split.logits.gather(1, top).sum()}, split.activations);
    benchmark::DoNotOptimize(grads[0].data_ptr());
  });
}

/// Grad-CAM's parts: raw map from layer4-sized activations and gradients, then
/// pytorch-grad-cam's post-processing to 224x224.
void BM_PartsMapAndPostprocess(benchmark::State& state) {
  const auto B = state.range(0);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(2);
  const auto A = torch::rand({B, 512, 7, 7}, gen);
  const auto G = torch::randn({B, 512, 7, 7}, gen);
  run(state, B, [&] {
    const auto raw = am::raw_map(am::SaliencyMethod::kGradCam, A, G);
    benchmark::DoNotOptimize(am::postprocess_maps(raw, kSide, kSide).data_ptr());
  });
}

}  // namespace

// {batch}; the forward at 64 is the size of Score-CAM's passes.
BENCHMARK(BM_Forward)->Arg(1)->Arg(8)->Arg(64)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GradCam)->Arg(1)->Arg(8)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GradCamPlusPlus)->Arg(1)->Arg(8)->Unit(benchmark::kMillisecond);
// {batch, masked inputs per pass}. 512 channels / 64 = 8 passes of 64 masked inputs per
// frame (4,096 images per batch-8 iteration): one iteration, and one repetition at
// batch 8 whatever the command line asks. {1, 8}: the same work in passes of 8.
BENCHMARK(BM_ScoreCam)->Args({1, kScoreCamBatch})->Iterations(1)->Repetitions(3)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ScoreCam)->Args({8, kScoreCamBatch})->Iterations(1)->Repetitions(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ScoreCam)->Args({1, 8})->Iterations(1)->Repetitions(3)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GradCamMethodForm)->Arg(1)->Arg(8)->Unit(benchmark::kMillisecond);
// {batch, track}
BENCHMARK(BM_PartsSplitForward)->Args({1, 0})->Args({1, 1})->Args({8, 0})->Args({8, 1})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PartsForwardAndGradient)->Arg(1)->Arg(8)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PartsMapAndPostprocess)->Arg(1)->Arg(8)->Unit(benchmark::kMillisecond);

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
