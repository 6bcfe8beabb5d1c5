#include "attend/models/train.h"

#include <attend/datasets/rng.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>

namespace attend::models {
namespace {

// Streams of datasets::stream_key(seed, n, ...) drawn here.
constexpr std::uint64_t kModelGeneratorStream = 5;
constexpr std::uint64_t kValidationSampleStream = 6;

bool finite_at_least(double v, double lo) { return std::isfinite(v) && v >= lo; }

}  // namespace

void TrainOptions::validate() const {
  TORCH_CHECK(epochs_ >= 1 && epochs_ <= 100000, "train: epochs must be in 1..100000, got ", epochs_);
  TORCH_CHECK(batch_size_ >= 1 && batch_size_ <= 65536, "train: batch size must be in 1..65536, got ", batch_size_);
  TORCH_CHECK(std::isfinite(lr_) && lr_ > 0, "train: learning rate must be a finite number > 0, got ", lr_);
  TORCH_CHECK(finite_at_least(momentum_, 0) && momentum_ < 1, "train: momentum must be in [0,1), got ", momentum_);
  TORCH_CHECK(finite_at_least(weight_decay_, 0), "train: weight decay must be a finite number >= 0, got ",
              weight_decay_);
  TORCH_CHECK(step_epochs_ >= 1, "train: step epochs must be >= 1, got ", step_epochs_);
  TORCH_CHECK(std::isfinite(gamma_) && gamma_ > 0 && gamma_ <= 1, "train: gamma must be in (0,1], got ", gamma_);
  TORCH_CHECK(finite_at_least(clip_norm_, 0), "train: clip norm must be a finite number >= 0, got ", clip_norm_);
  TORCH_CHECK(patience_ >= 0, "train: patience must be >= 0, got ", patience_);
  TORCH_CHECK(eval_samples_ >= 0 && eval_samples_ <= 1000, "train: eval samples must be in 0..1000, got ",
              eval_samples_);
  TORCH_CHECK(checkpoint_every_ >= 0, "train: checkpoint every must be >= 0, got ", checkpoint_every_);
}

nlohmann::json TrainOptions::to_json() const {
  return {{"epochs", epochs_},
          {"batch_size", batch_size_},
          {"optimizer", enum_name(optimizer_)},
          {"lr", lr_},
          {"momentum", momentum_},
          {"weight_decay", weight_decay_},
          {"schedule", enum_name(schedule_)},
          {"step_epochs", step_epochs_},
          {"gamma", gamma_},
          {"clip_norm", clip_norm_},
          {"patience", patience_},
          {"eval_samples", eval_samples_},
          {"seed", seed_}};
}

double scheduled_lr(const TrainOptions& o, std::int64_t epoch) {
  switch (o.schedule()) {
    case Schedule::kStep:
      return o.lr() * std::pow(o.gamma(), static_cast<double>(epoch / o.step_epochs()));
    case Schedule::kCosine: {
      const double progress = static_cast<double>(epoch) / static_cast<double>(o.epochs());
      return o.lr() * 0.5 * (1.0 + std::cos(M_PI * progress));
    }
    case Schedule::kConstant:
      break;
  }
  return o.lr();
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<torch::Tensor>& parameters,
                                                        const TrainOptions& options) {
  switch (options.optimizer()) {
    case OptimizerKind::kSgd:
      return std::make_unique<torch::optim::SGD>(
          parameters,
          torch::optim::SGDOptions(options.lr()).momentum(options.momentum()).weight_decay(options.weight_decay()));
    case OptimizerKind::kAdam:
      break;
  }
  return std::make_unique<torch::optim::Adam>(
      parameters, torch::optim::AdamOptions(options.lr()).weight_decay(options.weight_decay()));
}

void seed_model_generators(Model& model, std::uint64_t seed, FitHooks& hooks) {
  // The model's generators start from the seed; resuming restores their state.
  std::uint64_t index = 0;
  for (auto& [name, generator] : model.generators()) {
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_current_seed(datasets::stream_key(seed, kModelGeneratorStream, index++));
    hooks.generators.emplace(name, generator);
  }
}

FitSummary train_classifier(Classifier& classifier, const datasets::ImageSource& train,
                            const datasets::ImageSource* validation, const TrainOptions& options,
                            const nlohmann::json& data, TrainingObserver* observer, const std::atomic<bool>* stop,
                            FitHooks hooks) {
  options.validate();
  TORCH_CHECK(train.size() > 0, "train: the training set is empty");
  for (const auto* source : {&train, validation}) {
    if (source == nullptr) continue;
    TORCH_CHECK(source->channels() == classifier.channels() && source->height() == classifier.height() &&
                    source->width() == classifier.width(),
                "train: the ", source == &train ? "training" : "validation", " data are ", source->channels(), "x",
                source->height(), "x", source->width(), " images but the model expects ", classifier.channels(), "x",
                classifier.height(), "x", classifier.width());
  }
  auto optimizer = make_optimizer(classifier.module().parameters(), options);
  seed_model_generators(classifier, options.seed(), hooks);

  CheckpointInfo description;
  description.model = {classifier.kind(), classifier.options()};
  description.training = options.to_json();
  description.data = data.is_null() ? nlohmann::json::object() : data;  // {} from C++ braces is null

  std::int64_t order_epoch = -1;  // the epoch `order` belongs to: drawn once per epoch
  std::vector<std::int64_t> order;
  auto loss = [&](const StepContext& c) -> StepLoss {
    for (auto& group : optimizer->param_groups()) group.options().set_lr(scheduled_lr(options, c.epoch));
    if (order_epoch != c.epoch) {
      order = datasets::epoch_order(train.size(), options.seed(), c.epoch);
      order_epoch = c.epoch;
    }
    const auto indices = shard_batch(hooks, datasets::order_batch(order, options.batch_size(), c.step_in_epoch));
    const auto batch = train.get(indices, c.epoch);
    classifier.set_epoch(c.epoch, options.epochs());
    auto l = classifier.loss(batch);
    return {l.total, static_cast<std::int64_t>(indices.size()), l.metrics};
  };
  EvalFn eval;
  if (validation != nullptr) {
    eval = [&](std::int64_t epoch) {
      // Sampled validation draws from a generator of its own, so it does not move
      // the training generators.
      auto generator = at::make_generator<at::CPUGeneratorImpl>(
          datasets::stream_key(options.seed(), kValidationSampleStream, static_cast<std::uint64_t>(epoch)));
      const auto r = evaluate_classifier(classifier, *validation, options.eval_samples(), 256, generator);
      return Metrics{{"accuracy", r.accuracy}, {"nll", r.nll}};
    };
  }
  const auto steps = (train.size() + options.batch_size() - 1) / options.batch_size();
  auto fit_options = FitOptions()
                         .epochs(options.epochs())
                         .steps_per_epoch(steps)
                         .run_dir(options.run_dir())
                         .resume(options.resume())
                         .checkpoint_every(options.checkpoint_every())
                         .monitor(validation != nullptr ? "accuracy" : "")
                         .maximize(true)
                         .patience(validation != nullptr ? options.patience() : 0)
                         .clip_norm(options.clip_norm())
                         .skip_nonfinite(options.skip_nonfinite());
  return fit(classifier.module(), *optimizer, description, fit_options, loss, eval, observer, stop, hooks);
}

EvalResult evaluate_classifier(Classifier& classifier, const datasets::ImageSource& source, std::int64_t samples,
                               std::int64_t batch_size, std::optional<at::Generator> generator) {
  TORCH_CHECK(batch_size >= 1, "evaluate: batch size must be >= 1");
  TORCH_CHECK(source.channels() == classifier.channels() && source.height() == classifier.height() &&
                  source.width() == classifier.width(),
              "evaluate: the data are ", source.channels(), "x", source.height(), "x", source.width(),
              " images but the model expects ", classifier.channels(), "x", classifier.height(), "x",
              classifier.width());
  torch::NoGradGuard no_grad;
  ModeGuard evaluating(classifier.module(), false);
  EvalResult r;
  const auto k = classifier.classes();
  r.multi_label = classifier.multi_label();
  r.confusion = r.multi_label ? torch::zeros({k, 3}, torch::kInt64) : torch::zeros({k, k}, torch::kInt64);
  double nll_sum = 0;
  std::int64_t correct = 0;
  for (std::int64_t begin = 0; begin < source.size(); begin += batch_size) {
    std::vector<std::int64_t> idx;
    for (std::int64_t i = begin; i < std::min(source.size(), begin + batch_size); ++i) idx.push_back(i);
    const auto batch = source.get(idx, 0);
    if (r.multi_label) {
      TORCH_CHECK(batch.labels.dim() == 2 && batch.labels.size(1) == k, "evaluate: a ", k,
                  "-class multi-label model needs labels [B,", k, "], the data have ", batch.labels.sizes());
      const auto truth = batch.labels.to(torch::kFloat32);
      const auto scores = classifier.logits(batch.images);
      const auto predicted = (scores > 0).to(torch::kFloat32);
      correct += (predicted == truth).all(1).sum().item<std::int64_t>();
      nll_sum += torch::binary_cross_entropy_with_logits(scores, truth, {}, {}, at::Reduction::Sum).item<double>();
      r.confusion.select(1, 0) += (predicted * truth).sum(0).to(torch::kInt64);
      r.confusion.select(1, 1) += (predicted * (1 - truth)).sum(0).to(torch::kInt64);
      r.confusion.select(1, 2) += ((1 - predicted) * truth).sum(0).to(torch::kInt64);
      r.count += static_cast<std::int64_t>(idx.size());
      continue;
    }
    TORCH_CHECK(batch.labels.dim() == 1, "evaluate: a single-label model needs labels [B], the data have ",
                batch.labels.sizes(), " (train with --labels multi for several classes per image)");
    TORCH_CHECK(batch.labels.min().item<std::int64_t>() >= 0 && batch.labels.max().item<std::int64_t>() < k,
                "evaluate: labels outside 0..", k - 1, " for a ", k, "-class model");
    const auto log_probs = classifier.predict(batch.images, samples, generator);
    const auto predicted = log_probs.argmax(1);
    correct += (predicted == batch.labels).sum().item<std::int64_t>();
    nll_sum += torch::nll_loss(log_probs, batch.labels, {}, at::Reduction::Sum).item<double>();
    r.confusion.view(-1).index_add_(0, batch.labels * k + predicted, torch::ones_like(predicted));
    r.count += static_cast<std::int64_t>(idx.size());
  }
  r.accuracy = r.count > 0 ? static_cast<double>(correct) / static_cast<double>(r.count) : 0.0;
  r.nll = r.count > 0 ? nll_sum / static_cast<double>(r.count) : 0.0;
  return r;
}

}  // namespace attend::models
