// Faithfulness and localisation metrics of saliency maps: the formulas are in
// saliency_metrics.h.
#include <attend/models/saliency_metrics.h>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <tuple>

namespace attend::models {
namespace {

/// Images for the jobs [j0, j1) -> [j1 - j0, C, H, W].
using MakeImages = std::function<torch::Tensor(std::int64_t j0, std::int64_t j1)>;

void check_maps(const char* who, const torch::Tensor& maps) {
  TORCH_CHECK(maps.defined() && maps.dim() == 3, who, ": expected maps [B,H,W], got ",
              maps.defined() ? maps.sizes() : torch::IntArrayRef{});
  TORCH_CHECK(maps.numel() == 0 || torch::isfinite(maps).all().item<bool>(), who,
              ": expected finite maps, got NaN or infinity");
}

/// inputs [B,C,H,W] floating, maps [B,H,W] at the same size, targets [B] int64.
void check_model_arguments(const char* who, const torch::Tensor& inputs, const torch::Tensor& maps,
                           const torch::Tensor& targets) {
  TORCH_CHECK(inputs.defined() && inputs.dim() == 4 && torch::isFloatingType(inputs.scalar_type()), who,
              ": expected floating inputs [B,C,H,W], got ", inputs.defined() ? inputs.sizes() : torch::IntArrayRef{},
              inputs.defined() ? " " : "", inputs.defined() ? c10::toString(inputs.scalar_type()) : "undefined");
  check_maps(who, maps);
  TORCH_CHECK(maps.size(0) == inputs.size(0) && maps.size(1) == inputs.size(2) && maps.size(2) == inputs.size(3), who,
              ": expected maps [B,H,W] = [", inputs.size(0), ", ", inputs.size(2), ", ", inputs.size(3),
              "] for inputs ", inputs.sizes(), ", got ", maps.sizes());
  TORCH_CHECK(targets.defined() && targets.dim() == 1 && targets.size(0) == inputs.size(0) &&
                  targets.scalar_type() == torch::kInt64,
              who, ": expected targets [B] = [", inputs.size(0), "] int64 (one class per image), got ",
              targets.defined() ? targets.sizes() : torch::IntArrayRef{}, " ",
              targets.defined() ? c10::toString(targets.scalar_type()) : "undefined");
  TORCH_CHECK(inputs.size(0) >= 1 && inputs.size(2) >= 1 && inputs.size(3) >= 1, who,
              ": expected at least one image of at least one pixel, got inputs ", inputs.sizes());
}

void check_masks(const char* who, const torch::Tensor& maps, const torch::Tensor& masks) {
  TORCH_CHECK(maps.defined() && maps.dim() == 3, who, ": expected maps [B,H,W], got ",
              maps.defined() ? maps.sizes() : torch::IntArrayRef{});
  TORCH_CHECK(masks.defined() && masks.sizes() == maps.sizes() && masks.scalar_type() == torch::kBool, who,
              ": expected bool masks of the maps' shape ", maps.sizes(), ", got ",
              masks.defined() ? masks.sizes() : torch::IntArrayRef{}, " ",
              masks.defined() ? c10::toString(masks.scalar_type()) : "undefined");
}

/// P(c | x) from logits [n,classes] and classes [n] -> [n] float64.
torch::Tensor target_probability(const torch::Tensor& logits, const torch::Tensor& targets, bool multi_label) {
  const auto scores = logits.to(torch::kFloat64);
  const auto column = targets.unsqueeze(1);
  if (multi_label) return torch::sigmoid(scores.gather(1, column)).squeeze(1);
  return torch::softmax(scores, 1).gather(1, column).squeeze(1);
}

/// Scores `jobs` images made by `images`, at most `batch` per call, and returns each
/// one's P(job_targets[j] | image j) [jobs] float64.
torch::Tensor score_jobs(const char* who, SaliencyModel& model, std::int64_t jobs, std::int64_t batch,
                         const torch::Tensor& job_targets, bool multi_label, const MakeImages& images) {
  torch::NoGradGuard no_grad;
  auto out = torch::empty({jobs}, job_targets.options().dtype(torch::kFloat64));
  for (std::int64_t j0 = 0; j0 < jobs; j0 += batch) {
    const auto j1 = std::min(jobs, j0 + batch);
    const auto logits = model.logits(images(j0, j1));
    TORCH_CHECK(logits.defined() && logits.dim() == 2 && logits.size(0) == j1 - j0, who,
                ": expected the model's logits [", j1 - j0, ",classes], got ",
                logits.defined() ? logits.sizes() : torch::IntArrayRef{});
    if (j0 == 0) {
      const auto classes = logits.size(1);
      const auto lo = job_targets.min().item<std::int64_t>(), hi = job_targets.max().item<std::int64_t>();
      TORCH_CHECK(lo >= 0 && hi < classes, who, ": class ", lo < 0 ? lo : hi, " is out of range (the model has ",
                  classes, " classes)");
    }
    out.slice(0, j0, j1).copy_(target_probability(logits, job_targets.slice(0, j0, j1).to(logits.device()),
                                                  multi_label));
  }
  return out;
}

/// n_k = ceil(k N / S), k = 0..S.
std::vector<std::int64_t> step_counts(std::int64_t pixels, std::int64_t steps) {
  std::vector<std::int64_t> out;
  for (std::int64_t k = 0; k <= steps; ++k) out.push_back((k * pixels + steps - 1) / steps);
  return out;
}

/// Whether `shape` broadcasts to `target` (numpy rules).
bool broadcasts_to(torch::IntArrayRef shape, torch::IntArrayRef target) {
  if (shape.size() > target.size()) return false;
  for (size_t i = 1; i <= shape.size(); ++i) {
    const auto s = shape[shape.size() - i], t = target[target.size() - i];
    if (s != t && s != 1) return false;
  }
  return true;
}

PerturbationCurves perturbation_curves(const char* who, bool deletion, SaliencyModel& model,
                                       const torch::Tensor& inputs, const torch::Tensor& maps,
                                       const torch::Tensor& targets, const PerturbationOptions& options) {
  check_model_arguments(who, inputs, maps, targets);
  const auto S = options.steps(), batch = options.batch();
  TORCH_CHECK(S >= 1, who, ": expected at least 1 step, got ", S);
  TORCH_CHECK(batch >= 1, who, ": expected a batch of at least 1 image, got ", batch);
  const auto& given = options.baseline();
  TORCH_CHECK(!given.defined() || broadcasts_to(given.sizes(), inputs.sizes()), who, ": expected a baseline ",
              "broadcastable to the inputs ", inputs.sizes(), ", got ", given.defined() ? given.sizes() : torch::IntArrayRef{});
  const auto B = inputs.size(0), H = inputs.size(2), W = inputs.size(3), N = H * W;
  const auto device = inputs.device();

  torch::NoGradGuard no_grad;
  const auto baseline =
      given.defined() ? given.to(inputs.options()).expand(inputs.sizes()) : torch::zeros_like(inputs);
  // rank[b][p] = the position of pixel p in image b's order.
  const auto order = saliency_order(maps).to(device);
  auto rank = torch::empty_like(order);
  rank.scatter_(1, order, torch::arange(N, order.options()).expand({B, N}));
  const auto fractions = perturbation_fractions(N, S);
  const auto counts = torch::tensor(step_counts(N, S), torch::kInt64).to(device);

  const auto points = S + 1;
  const auto job_targets = targets.to(device).repeat_interleave(points);
  const auto images = [&](std::int64_t j0, std::int64_t j1) {
    const auto jobs = torch::arange(j0, j1, torch::TensorOptions().dtype(torch::kInt64).device(device));
    const auto b = jobs.div(points, "floor"), k = jobs.remainder(points);
    // Pixels among the first n_k of their image's order, [n,1,H,W].
    const auto first = (rank.index_select(0, b) < counts.index_select(0, k).unsqueeze(1)).view({j1 - j0, 1, H, W});
    const auto x = inputs.index_select(0, b), base = baseline.index_select(0, b);
    return deletion ? torch::where(first, base, x) : torch::where(first, x, base);
  };
  const auto probabilities = score_jobs(who, model, B * points, batch, job_targets, options.multi_label(), images);

  PerturbationCurves out;
  out.fractions = fractions.to(device);
  out.curves = probabilities.view({B, points});
  out.auc = trapezoid_auc(out.curves, out.fractions);
  return out;
}

}  // namespace

torch::Tensor saliency_order(const torch::Tensor& maps) {
  check_maps("saliency_order", maps);
  const auto flat = maps.reshape({maps.size(0), maps.size(1) * maps.size(2)});
  // A stable sort keeps equal values in index order, descending as well.
  return std::get<1>(torch::sort(flat, /*stable=*/true, /*dim=*/1, /*descending=*/true));
}

torch::Tensor perturbation_fractions(std::int64_t pixels, std::int64_t steps) {
  TORCH_CHECK(pixels >= 1 && steps >= 1, "perturbation_fractions: expected pixels >= 1 and steps >= 1, got ", pixels,
              " pixels and ", steps, " steps");
  std::vector<double> out;
  for (const auto n : step_counts(pixels, steps)) out.push_back(static_cast<double>(n) / static_cast<double>(pixels));
  return torch::tensor(out, torch::kFloat64);
}

torch::Tensor trapezoid_auc(const torch::Tensor& curves, const torch::Tensor& fractions) {
  TORCH_CHECK(curves.defined() && fractions.defined() && curves.dim() == 2 && fractions.dim() == 1 &&
                  curves.size(1) == fractions.size(0) && fractions.size(0) >= 2,
              "trapezoid_auc: expected curves [B,n] and fractions [n] with n >= 2, got ",
              curves.defined() ? curves.sizes() : torch::IntArrayRef{}, " and ",
              fractions.defined() ? fractions.sizes() : torch::IntArrayRef{});
  const auto f = fractions.to(curves.device(), torch::kFloat64);
  const auto y = curves.to(torch::kFloat64);
  const auto n = f.size(0);
  const auto widths = f.slice(0, 1, n) - f.slice(0, 0, n - 1);
  TORCH_CHECK((widths >= 0).all().item<bool>(), "trapezoid_auc: expected non-decreasing fractions, got ",
              fractions.cpu());
  return ((y.slice(1, 1, n) + y.slice(1, 0, n - 1)) / 2 * widths).sum(1);
}

PerturbationCurves deletion_curves(SaliencyModel& model, const torch::Tensor& inputs, const torch::Tensor& maps,
                                   const torch::Tensor& targets, const PerturbationOptions& options) {
  return perturbation_curves("deletion_curves", true, model, inputs, maps, targets, options);
}

PerturbationCurves insertion_curves(SaliencyModel& model, const torch::Tensor& inputs, const torch::Tensor& maps,
                                    const torch::Tensor& targets, const PerturbationOptions& options) {
  return perturbation_curves("insertion_curves", false, model, inputs, maps, targets, options);
}

ConfidenceChange confidence_change(SaliencyModel& model, const torch::Tensor& inputs, const torch::Tensor& maps,
                                   const torch::Tensor& targets, bool multi_label, std::int64_t batch) {
  const char* who = "confidence_change";
  check_model_arguments(who, inputs, maps, targets);
  TORCH_CHECK(batch >= 1, who, ": expected a batch of at least 1 image, got ", batch);
  const auto lo = maps.min().item<double>(), hi = maps.max().item<double>();
  TORCH_CHECK(lo >= 0 && hi <= 1, who, ": expected maps in [0,1] (scale raw maps first), got values in [", lo, ", ",
              hi, "]");
  const auto B = inputs.size(0);
  const auto device = inputs.device();

  torch::NoGradGuard no_grad;
  const auto scale = maps.to(inputs.options()).unsqueeze(1);  // [B,1,H,W]
  // Jobs 0..B-1 are the inputs, B..2B-1 the masked inputs.
  const auto images = [&](std::int64_t j0, std::int64_t j1) {
    const auto jobs = torch::arange(j0, j1, torch::TensorOptions().dtype(torch::kInt64).device(device));
    const auto b = jobs.remainder(B);
    const auto masked = (jobs >= B).view({j1 - j0, 1, 1, 1});
    const auto x = inputs.index_select(0, b);
    return torch::where(masked, x * scale.index_select(0, b), x);
  };
  const auto job_targets = targets.to(device).repeat(2);
  const auto probabilities = score_jobs(who, model, 2 * B, batch, job_targets, multi_label, images);

  ConfidenceChange out;
  out.p = probabilities.slice(0, 0, B);
  out.q = probabilities.slice(0, B, 2 * B);
  out.drop = torch::where(out.p > 0, (out.p - out.q).clamp_min(0) / out.p, torch::zeros_like(out.p));
  out.increase = out.q > out.p;
  return out;
}

double average_drop(const ConfidenceChange& change) {
  TORCH_CHECK(change.drop.defined() && change.drop.numel() >= 1, "average_drop: expected at least one image");
  return 100.0 * change.drop.to(torch::kFloat64).mean().item<double>();
}

double increase_in_confidence(const ConfidenceChange& change) {
  TORCH_CHECK(change.increase.defined() && change.increase.numel() >= 1,
              "increase_in_confidence: expected at least one image");
  return 100.0 * change.increase.to(torch::kFloat64).mean().item<double>();
}

torch::Tensor pointing_game(const torch::Tensor& maps, const torch::Tensor& masks, double tolerance) {
  const char* who = "pointing_game";
  check_masks(who, maps, masks);
  check_maps(who, maps);
  TORCH_CHECK(tolerance >= 0, who, ": expected a tolerance >= 0 pixels, got ", tolerance);
  const auto B = maps.size(0), H = maps.size(1), W = maps.size(2), N = H * W;
  TORCH_CHECK(N >= 1, who, ": expected maps of at least one pixel, got ", maps.sizes());
  torch::NoGradGuard no_grad;
  const auto flat = maps.reshape({B, N});
  const auto index = torch::arange(N, flat.options().dtype(torch::kInt64)).expand({B, N});
  const auto top = std::get<0>(flat.max(1, /*keepdim=*/true));
  // The first maximum in row-major order, whatever argmax does on ties.
  const auto at = std::get<0>(torch::where(flat == top, index, N).min(1));
  const auto i = at.div(W, "floor").to(torch::kFloat64).view({B, 1, 1});
  const auto j = at.remainder(W).to(torch::kFloat64).view({B, 1, 1});
  const auto f64 = flat.options().dtype(torch::kFloat64);
  const auto rows = torch::arange(H, f64).view({1, H, 1}), cols = torch::arange(W, f64).view({1, 1, W});
  const auto d2 = (rows - i).square() + (cols - j).square();  // [B,H,W], exact integers
  return (masks.to(maps.device()) & (d2 <= tolerance * tolerance)).reshape({B, N}).any(1);
}

torch::Tensor mask_iou(const torch::Tensor& maps, const torch::Tensor& masks, double threshold) {
  check_masks("mask_iou", maps, masks);
  torch::NoGradGuard no_grad;
  const auto B = maps.size(0);
  const auto binary = maps >= threshold;
  const auto m = masks.to(maps.device());
  const auto inter = (binary & m).reshape({B, -1}).sum(1).to(torch::kFloat64);
  const auto uni = (binary | m).reshape({B, -1}).sum(1).to(torch::kFloat64);
  return torch::where(uni > 0, inter / uni.clamp_min(1), torch::ones_like(uni));
}

std::vector<double> default_iou_thresholds() {
  std::vector<double> out;
  for (int k = 1; k <= 19; ++k) out.push_back(k / 20.0);
  return out;
}

ThresholdSweep best_threshold_iou(const torch::Tensor& maps, const torch::Tensor& masks,
                                  const std::vector<double>& thresholds) {
  const char* who = "best_threshold_iou";
  check_masks(who, maps, masks);
  TORCH_CHECK(maps.size(0) >= 1, who, ": expected at least one image, got maps ", maps.sizes());
  TORCH_CHECK(!thresholds.empty(), who, ": expected at least one threshold");
  ThresholdSweep out;
  out.thresholds = thresholds;
  for (const double t : thresholds) {
    TORCH_CHECK(std::isfinite(t), who, ": expected finite thresholds, got ", t);
    auto iou = mask_iou(maps, masks, t);
    const double mean = iou.mean().item<double>();
    out.mean_ious.push_back(mean);
    if (out.mean_ious.size() == 1 || mean > out.mean_iou) {
      out.threshold = t;
      out.mean_iou = mean;
      out.per_image = std::move(iou);
    }
  }
  return out;
}

}  // namespace attend::models
