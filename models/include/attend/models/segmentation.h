#pragma once
/// Weakly supervised segmentation from CAMs: pseudo-masks of a CAM or SEAM model
/// (seam.h) scored against the object scenes' ground-truth masks.
///
/// For each scene: the model's CAMs aggregated over scales and flips (aggregate_cams),
/// masked by the image labels (the truth, as the SEAM protocol does for pseudo-labels
/// of the training set, or the model's own predictions), pseudo-masks argmax over
/// [alpha, CAMs], scored as PASCAL VOC does (SegmentationScores: background + K
/// classes, the 255 band ignored). The background score alpha is swept over a curve;
/// the best alpha on the validation scenes is the one applied to the test scenes.
///
/// Equivariance error of a model under a transform T (its Siamese transform):
///   sum |C(T(x)) - T(C(x))| / sum |C(x)|, C(x) = the foreground CAMs of one pass at
/// the input size (the revised CAMs when the PCM is trained), max-normalised per
/// image and class as L_er does (seam::max_norm: the scale of a CAM does not count,
/// as pseudo-masks normalise it too), times the image labels, summed over the scenes.

#include <attend/datasets/object_scenes.h>
#include <attend/models/seam.h>
#include <attend/models/segmentation_metrics.h>

#include <torch/arg.h>

#include <optional>
#include <vector>

namespace attend::models {

/// One pass of a CAM-producing classifier: kind "seam" (cam_rv when its PCM is
/// trained, else cam) or "cam" (M_c = sum_k w_ck A_k at the last block, no bias,
/// resized with corners aligned to the input), foreground [B,K,h,w] at the input size
/// for images of any size. Puts the model in evaluation mode (once, here); passes run
/// without autograd.
/// throws c10::Error for other kinds.
CamPass cam_pass(Classifier& model);

struct SegmentationEvalOptions {
  TORCH_ARG(CamInference, inference) = {};
  /// Mask the CAMs by the model's predicted classes (logit > 0) instead of the truth.
  TORCH_ARG(bool, predicted_labels) = false;
  /// The background scores tried; empty = 0.00, 0.01, ..., 0.60.
  TORCH_ARG(std::vector<double>, alphas) = {};
  /// Use this alpha instead of the best on validation (then val may be empty).
  TORCH_ARG(std::optional<double>, alpha) = std::nullopt;
  TORCH_ARG(std::int64_t, batch) = 16;
  /// Grow every object's true mask by this many pixels into the background (thin
  /// strokes that a stride-8 map cannot reach); the ignore band is grown alike.
  TORCH_ARG(std::int64_t, dilate) = 0;
};

struct SegmentationReport {
  std::vector<double> alphas;
  std::vector<double> val_miou;   ///< per alpha (empty without validation scenes)
  std::vector<double> test_miou;  ///< per alpha
  double alpha = 0;               ///< chosen on validation (or given)
  SegmentationScores test{2};     ///< the test scenes at `alpha`
  double equivariance_error = 0;  ///< on the test scenes, under the model's transform
  std::int64_t val_count = 0, test_count = 0;
};

/// throws c10::Error for a model without CAMs, a source of another class count, or
/// an alpha outside [0, 1].
SegmentationReport evaluate_segmentation(Classifier& model, const datasets::ObjectLabelSource* val,
                                         const datasets::ObjectLabelSource& test,
                                         const SegmentationEvalOptions& options = {});

/// The equivariance error's two sums over images [B,C,H,W] and labels [B,K]:
/// {sum |C(T(x)) - T(C(x))|, sum |C(x)|}.
std::pair<double, double> equivariance_sums(const CamPass& pass, const torch::Tensor& images,
                                            const torch::Tensor& labels, SeamTransform transform, double scale);

/// A VOC label image [H,W] (0 background, c+1 objects, 255 ignore) with every object
/// grown by `pixels` (a square of side 2 pixels + 1) into background and ignore
/// pixels (where two grow into the same pixel, the lower label wins); the ignore band
/// is then the background pixels 4-adjacent to an object. 0 pixels: unchanged.
torch::Tensor dilate_labels(const torch::Tensor& labels, std::int64_t pixels);

}  // namespace attend::models
