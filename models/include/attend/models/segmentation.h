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

#include <map>
#include <optional>
#include <vector>

namespace attend::models {

/// Which maps of a model a CAM pass returns.
enum class CamStage {
  kModel,    ///< the model's own: a seam model's revised maps when its PCM is trained, else raw
  kRaw,      ///< the CAM head's maps, before any PCM (a cam model's CAMs)
  kRevised,  ///< the PCM's revised maps cam_rv (a seam model whose PCM is trained only)
};

/// The stage kModel stands for on this model (kRaw or kRevised); others unchanged.
/// throws c10::Error for kRevised on a cam model or a seam model whose PCM is not
/// trained (--ecr off --min-pool off: its PCM keeps its initial weights).
CamStage resolve_cam_stage(Classifier& model, CamStage stage);

/// "raw" or "revised".
const char* cam_stage_name(CamStage resolved);

/// One pass of a CAM-producing classifier: kind "seam" (cam_rv or cam, by `stage`) or
/// "cam" (M_c = sum_k w_ck A_k at the last block, no bias, resized with corners
/// aligned to the input), foreground [B,K,h,w] at the input size for images of any
/// size. Puts the model in evaluation mode (once, here); passes run without autograd.
/// throws c10::Error for other kinds, or a stage the model does not have
/// (resolve_cam_stage).
CamPass cam_pass(Classifier& model, CamStage stage = CamStage::kModel);

/// Whether a model segments by its own argmax over [background, classes] instead of
/// CAMs against a background score alpha: a SEAM network trained with pixel
/// supervision, whose K+1 maps are per-pixel class scores.
bool segments_by_argmax(Classifier& model);

/// For such a model, one pass: its per-pixel probabilities over background and the K
/// classes [B,K+1,h,w] (softmax of its maps), at the input size, without autograd.
/// Puts the model in evaluation mode.
/// throws c10::Error for a model that does not segment by argmax.
CamPass probability_pass(Classifier& model);

/// Label images [B,H,W] int64 (0 background, c+1 class c) from summed probabilities
/// [B,K+1,H,W]: the argmax over the background and the classes present in labels
/// [B,K] (0/1), as the CAM protocol masks its CAMs by them.
torch::Tensor argmax_masks(const torch::Tensor& sums, const torch::Tensor& labels);

struct SegmentationEvalOptions {
  TORCH_ARG(CamInference, inference) = {};
  /// Mask the CAMs by the model's predicted classes (logit > 0) instead of the truth.
  TORCH_ARG(bool, predicted_labels) = false;
  /// The maps scored (and whose equivariance error is reported): a seam model's raw
  /// CAMs or its PCM-revised ones (cam_pass).
  TORCH_ARG(CamStage, stage) = CamStage::kModel;
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
  /// The model segments by its own argmax (segments_by_argmax): no alpha, no curve.
  bool by_argmax = false;
  std::vector<double> alphas;
  std::vector<double> val_miou;   ///< per alpha (empty without validation scenes)
  std::vector<double> test_miou;  ///< per alpha
  double alpha = 0;               ///< chosen on validation (or given)
  SegmentationScores test{2};     ///< the test scenes at `alpha`
  /// The test scenes at `alpha` grouped by the number of objects placed in them
  /// (ObjectScene::objects): their scores and how many scenes each group holds.
  std::map<std::int64_t, SegmentationScores> test_by_objects;
  std::map<std::int64_t, std::int64_t> scenes_by_objects;
  double equivariance_error = 0;  ///< on the test scenes, under the model's transform
  CamStage stage = CamStage::kRaw;  ///< the maps scored (resolved: kRaw or kRevised)
  std::int64_t val_count = 0, test_count = 0;
};

/// A model that segments by argmax is scored by argmax_masks of its probabilities
/// summed over the same scales and flips (alphas and validation unused; alpha NaN).
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
