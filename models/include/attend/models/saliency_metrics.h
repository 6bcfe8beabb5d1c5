#pragma once
/// How good a saliency map is, as maths on tensors: faithfulness (does the model's
/// confidence follow the pixels the map ranks first?) and localisation (does the map
/// sit on the object?).
///
/// Notation: x the model inputs [B,C,H,W] (after SaliencyModel::prepare), M the maps
/// [B,H,W] at the input size (compute_saliency's `maps` for one target), c the target
/// class of each image, N = H*W, m the ground-truth masks [B,H,W] bool of the target
/// class. "Probability" P(c | x) is softmax over the logits, or sigmoid of the target's
/// logit alone when `multi_label` (one independent sigmoid per class).
///
///   order        the pixels of each map by decreasing M, ties by increasing pixel index
///                (row-major i*W + j), so results never depend on the sort algorithm.
///   deletion     (Petsiuk et al. 2018, RISE) with steps S and n_k = ceil(k N / S),
///                k = 0..S: x_k = x with its first n_k pixels in `order` (all channels)
///                set to the baseline b; curve_k = P(c | x_k). x_0 = x, x_S = b.
///   insertion    the reverse: x_k = b with the first n_k pixels put back from x.
///                x_0 = b, x_S = x.
///   AUC          trapezoid rule over the fraction of pixels f_k = n_k / N in [0,1]:
///                AUC = sum_k (f_{k+1} - f_k) (curve_k + curve_{k+1}) / 2.
///                A faithful map has a LOW deletion AUC and a HIGH insertion AUC.
///   average drop (Chattopadhyay et al. 2018, Grad-CAM++) p = P(c | x),
///                q = P(c | x * M) (M broadcast over channels);
///                drop = max(0, p - q) / p (0 when p = 0); Average Drop = 100 mean(drop).
///   increase     in confidence: 1 if q > p else 0; reported as 100 mean(increase).
///   pointing     (Zhang et al. 2016, excitation backprop) hit when the map's maximum
///                pixel (the first in row-major order on ties) lies within Euclidean
///                distance t of a pixel of m: exists (i,j) with m(i,j) and
///                (i - i*)^2 + (j - j*)^2 <= t^2. t = 0 is the pixel itself; the paper
///                uses t = 15 px on 224 x 224 images. An empty mask is always a miss.
///   IoU at t     B_t = (M >= t) (in the map's dtype); IoU = |B_t & m| / |B_t | m|, and 1
///                when the union is empty, i.e. only when both B_t and m are empty.
///
/// Perturbed and masked images are in model-input space: the default baseline "zeros
/// of the input" is the mean colour for a model whose `prepare` subtracts the mean,
/// and black for one that does not. Pass `baseline` (e.g. prepare(blurred images)) to
/// delete towards something else.
///
/// Models are called through SaliencyModel::logits on at most `batch` images at a time,
/// under torch::NoGradGuard (returned tensors are ordinary tensors, not inference ones).
/// Curves, probabilities, drops and IoUs are float64 on the inputs' device.

#include <attend/models/saliency.h>

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace attend::models {

/// Options of deletion_curves and insertion_curves.
struct PerturbationOptions {
  /// S: the curve has S + 1 points, at n_k = ceil(k N / S) pixels; S >= 1.
  TORCH_ARG(std::int64_t, steps) = 32;
  /// Perturbed images per call of SaliencyModel::logits; >= 1.
  TORCH_ARG(std::int64_t, batch) = 64;
  /// Probability as sigmoid of the target's logit instead of softmax over the classes.
  TORCH_ARG(bool, multi_label) = false;
  /// The baseline b in model-input space, broadcastable to the inputs [B,C,H,W]
  /// (e.g. [B,C,H,W], [C,H,W], [C,1,1] or a scalar); undefined = zeros of the input.
  TORCH_ARG(torch::Tensor, baseline) = {};
};

/// One curve per image.
struct PerturbationCurves {
  torch::Tensor fractions;  ///< [S+1] float64: f_k = n_k / N, from 0 to 1
  torch::Tensor curves;     ///< [B,S+1] float64: P(c | x_k)
  torch::Tensor auc;        ///< [B] float64: trapezoid_auc(curves, fractions)
};

/// The order above: maps [B,H,W] (any real dtype, finite) -> [B,H*W] int64, the flat
/// pixel indices of each map by decreasing value, ties by increasing index.
/// throws c10::Error for a map that is not [B,H,W] or holds NaN or infinity.
torch::Tensor saliency_order(const torch::Tensor& maps);

/// f_k = n_k / N with n_k = ceil(k N / S), k = 0..S -> [S+1] float64 (on the CPU).
/// requires: pixels >= 1, steps >= 1.
torch::Tensor perturbation_fractions(std::int64_t pixels, std::int64_t steps);

/// Trapezoid rule: curves [B,n] over the abscissae fractions [n] (non-decreasing),
/// n >= 2 -> [B] float64.
/// throws c10::Error for other shapes or decreasing fractions.
torch::Tensor trapezoid_auc(const torch::Tensor& curves, const torch::Tensor& fractions);

/// Deletion curves (formulas above) of inputs [B,C,H,W] (model inputs), maps [B,H,W]
/// (only their order matters) and targets [B] int64 (one class per image).
/// ensures: B*(S+1) images are scored, in ceil(B*(S+1) / batch) calls of
///   model.logits; the results do not depend on `batch`.
/// throws c10::Error for mismatched shapes (naming them), a class out of range,
///   steps or batch < 1, a baseline not broadcastable to the inputs, non-finite maps.
PerturbationCurves deletion_curves(SaliencyModel& model, const torch::Tensor& inputs, const torch::Tensor& maps,
                                   const torch::Tensor& targets, const PerturbationOptions& options = {});

/// Insertion curves: as deletion_curves, starting from the baseline.
PerturbationCurves insertion_curves(SaliencyModel& model, const torch::Tensor& inputs, const torch::Tensor& maps,
                                    const torch::Tensor& targets, const PerturbationOptions& options = {});

/// Per image p, q, drop and increase (formulas above).
struct ConfidenceChange {
  torch::Tensor p;         ///< [B] float64: P(c | x)
  torch::Tensor q;         ///< [B] float64: P(c | x * M)
  torch::Tensor drop;      ///< [B] float64 in [0,1]: max(0, p - q) / p, 0 when p = 0
  torch::Tensor increase;  ///< [B] bool: q > p
};

/// p and q of inputs [B,C,H,W] (model inputs), maps [B,H,W] in [0,1] (as
/// compute_saliency gives them) and targets [B] int64; 2B images scored, at most
/// `batch` per call of model.logits.
/// throws c10::Error for mismatched shapes, a class out of range, batch < 1, or a map
///   value outside [0,1] (raw maps must be scaled first).
ConfidenceChange confidence_change(SaliencyModel& model, const torch::Tensor& inputs, const torch::Tensor& maps,
                                   const torch::Tensor& targets, bool multi_label = false, std::int64_t batch = 64);

/// Average Drop in percent: 100 mean(change.drop). requires: at least one image.
double average_drop(const ConfidenceChange& change);
/// Increase in Confidence in percent: 100 mean(change.increase). requires: at least one image.
double increase_in_confidence(const ConfidenceChange& change);

/// Pointing game hits of maps [B,H,W] (finite) against masks [B,H,W] bool with
/// tolerance t >= 0 pixels -> [B] bool.
/// throws c10::Error for mismatched shapes, a non-bool mask, t < 0 or non-finite maps.
torch::Tensor pointing_game(const torch::Tensor& maps, const torch::Tensor& masks, double tolerance = 0.0);

/// IoU at t of maps [B,H,W] and masks [B,H,W] bool -> [B] float64 (empty union = 1).
/// throws c10::Error for mismatched shapes or a non-bool mask.
torch::Tensor mask_iou(const torch::Tensor& maps, const torch::Tensor& masks, double threshold);

/// 0.05, 0.10, ..., 0.95 (19 thresholds, each k / 20).
std::vector<double> default_iou_thresholds();

/// The best of several thresholds for a whole set.
struct ThresholdSweep {
  double threshold = 0.0;            ///< the threshold with the highest mean IoU (the first on ties)
  double mean_iou = 0.0;             ///< that mean over the images
  torch::Tensor per_image;           ///< [B] float64: each image's IoU at `threshold`
  std::vector<double> thresholds;    ///< as given
  std::vector<double> mean_ious;     ///< the mean IoU at each of `thresholds`
};

/// For each threshold t the mean over the B images of IoU at t; returns the t that
/// maximises it (one threshold for the whole set, not one per image).
/// throws c10::Error for mismatched shapes, a non-bool mask, no images, or no thresholds.
ThresholdSweep best_threshold_iou(const torch::Tensor& maps, const torch::Tensor& masks,
                                  const std::vector<double>& thresholds = default_iou_thresholds());

}  // namespace attend::models
