#pragma once
/// Saliency maps: CAM and the Grad-CAM family over any model opened at its target
/// layers (a SaliencyModel: our classifiers, or a user's TorchScript file, see
/// scripted_model.h). Maths on tensors only; drawing is in vision/.
///
/// Notation: A_k the activation map k (h x w) of the target layer, y^c the target
/// class's raw score (logit, no softmax), g_k = dy^c/dA_k, Z = h*w.
///
///   cam        M = sum_k w^c_k A_k, for heads that are global average pooling then a
///              linear layer (w = the linear layer's weights; Zhou et al. 2016)
///   gradcam    a_k = (1/Z) sum_ij g_k(ij);                     M = sum_k a_k A_k
///   gradcam++  a_k = sum_ij r_k(ij) ReLU(g_k(ij)),
///              r = g^2 / (2 g^2 + (sum_ab A_k(ab)) g^3 + 1e-6), r = 0 where g = 0
///   xgradcam   a_k = sum_ij A_k(ij) g_k(ij) / (sum_ab A_k(ab) + 1e-7)
///   hirescam   M = sum_k g_k * A_k (element-wise; no spatial averaging)
///   layercam   M = sum_k ReLU(g_k) * A_k
///   scorecam   H_k = min-max(Up(A_k)) (bilinear, corners aligned, to the input size;
///              / (max - min + 1e-8)); s_k = y^c(X * H_k) (the raw score of the input
///              masked by H_k, scored in batches); a = softmax_k(s); M = sum_k a_k A_k
///   eigencam   the activations as HW x K rows, centred per channel; M = the rows'
///              projection on the first right singular vector. Class agnostic. The
///              SVD's sign is arbitrary; ours is fixed so that the map's largest
///              magnitude is positive (max M >= -min M), which also makes the map
///              independent of sign flips of any channels.
///
/// Post-processing, as pytorch-grad-cam's BaseCAM does it, so users switching from it
/// get the same maps: per target layer ReLU, then min-max scaling
/// ((M - min) / (max + 1e-7) after subtracting min), then a bilinear resize to the input
/// size (cv::resize INTER_LINEAR: half-pixel centres); several layers are fused as the
/// mean of their maps after another ReLU, min-max scaled again. Augmentation smoothing
/// (`aug_smooth`) averages the final maps of the 6 inputs {identity, horizontal flip} x
/// {x0.9, x1, x1.1} of the model input (flipped maps flipped back), not rescaled.
///
/// Gradients are taken with torch::autograd::grad with respect to the target
/// activations only; no parameter requires a gradient, so backward stops at the
/// earliest target layer.

#include <attend/models/enum_names.h>

#include <torch/arg.h>
#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

namespace attend::models {

/// What one pass through a model opened at target layers gives.
struct SplitForward {
  torch::Tensor logits;                    ///< [B,classes] raw scores
  std::vector<torch::Tensor> activations;  ///< per requested layer [B,K,h,w]
};

/// A model opened at the layers a saliency method can target.
/// Inputs are "model inputs": images [B,C,H,W] float after `prepare` (e.g. the
/// mean/std normalisation a TorchScript model expects).
class SaliencyModel {
 public:
  virtual ~SaliencyModel() = default;
  /// One line saying what the model is ("cam checkpoint out/cam/best.pt", ...).
  virtual std::string describe() const = 0;
  /// Names of the layers that can be targets, in network order.
  virtual std::vector<std::string> layers() const = 0;
  /// The layer used when none is named (the last feature map).
  virtual std::string default_layer() const = 0;
  /// Channels the model takes (1 or 3).
  virtual std::int64_t channels() const = 0;
  /// The input size the model is built for; 0 when any size works.
  virtual std::int64_t height() const { return 0; }
  virtual std::int64_t width() const { return 0; }
  /// Images float in [0,1] (RGB for 3 channels) [B,C,H,W] -> model inputs.
  virtual torch::Tensor prepare(const torch::Tensor& images) const { return images; }
  /// One pass over model inputs. When `track`, the activations are in the autograd
  /// graph of the logits (torch::autograd::grad(logits..., activations) works) while no
  /// parameter requires a gradient; else the pass runs without autograd.
  /// throws c10::Error for an unknown layer (listing the valid ones).
  virtual SplitForward forward(const torch::Tensor& inputs, const std::vector<std::string>& layers,
                               bool track) = 0;
  /// Raw class scores [B,classes] of model inputs, without autograd.
  virtual torch::Tensor logits(const torch::Tensor& inputs) = 0;
  /// For CAM: the weights [classes,K] of a head that is global average pooling then
  /// one linear layer after `layer`; an undefined tensor when the head is not that.
  virtual torch::Tensor cam_weights(const std::string& /*layer*/) { return {}; }
  /// Class names when known ({} = use indices).
  virtual std::vector<std::string> class_names() const { return {}; }
};

enum class SaliencyMethod { kCam, kGradCam, kGradCamPlusPlus, kXGradCam, kHiResCam, kLayerCam, kScoreCam, kEigenCam };

template <>
struct EnumNames<SaliencyMethod> {
  static constexpr const char* what = "saliency method";
  static constexpr std::pair<SaliencyMethod, const char*> names[] = {
      {SaliencyMethod::kCam, "cam"},           {SaliencyMethod::kGradCam, "gradcam"},
      {SaliencyMethod::kGradCamPlusPlus, "gradcam++"}, {SaliencyMethod::kXGradCam, "xgradcam"},
      {SaliencyMethod::kHiResCam, "hirescam"}, {SaliencyMethod::kLayerCam, "layercam"},
      {SaliencyMethod::kScoreCam, "scorecam"}, {SaliencyMethod::kEigenCam, "eigencam"}};
};

/// Whether the method differentiates the score (all but cam, scorecam and eigencam).
bool needs_gradients(SaliencyMethod method);

struct SaliencyOptions {
  TORCH_ARG(SaliencyMethod, method) = SaliencyMethod::kGradCam;
  /// Target layers ({} = the model's default layer); several are fused.
  TORCH_ARG(std::vector<std::string>, layers) = {};
  /// Score-CAM: masked inputs per forward pass.
  TORCH_ARG(std::int64_t, batch) = 8;
  /// Average over {identity, flip} x {0.9, 1, 1.1} (6 passes).
  TORCH_ARG(bool, aug_smooth) = false;
  /// Without explicit targets: explain each image's `top_k` best classes, chosen from
  /// the logits of the method's own forward pass (no extra pass).
  TORCH_ARG(std::int64_t, top_k) = 1;
};

/// Maps of a batch for T targets per image.
struct SaliencyMaps {
  /// Per target layer: the method's map before any post-processing [B,T,h,w].
  std::vector<torch::Tensor> raw;
  /// The post-processed maps [B,T,H,W] float32 in [0,1] at the input size.
  torch::Tensor maps;
  /// The model's raw scores of the (unaugmented) inputs [B,classes].
  torch::Tensor logits;
  /// The classes explained [B,T] int64 (given, or the top_k best).
  torch::Tensor targets;
};

/// Maps of `inputs` [B,C,H,W] (model inputs) for the classes `targets` [B,T] int64
/// (T >= 1 targets per image), or, when `targets` is undefined, for each image's
/// options.top_k best classes. One forward pass
/// serves all targets (Score-CAM: one masked pass per image and channel batch, scored for
/// every target).
/// With aug_smooth, `raw` holds the unaugmented pass's maps.
/// throws c10::Error for a target out of range, an unknown layer, or CAM on a model
/// whose head is not global average pooling + linear.
SaliencyMaps compute_saliency(SaliencyModel& model, const torch::Tensor& inputs, const torch::Tensor& targets,
                              const SaliencyOptions& options);

/// The k highest-scoring classes of each row of logits [B,classes] -> [B,k] int64.
torch::Tensor top_classes(const torch::Tensor& logits, std::int64_t k);

/// The raw map of one method at one layer, from activations A [B,K,h,w] and gradients
/// G [B,K,h,w] (undefined for methods without gradients) -> [B,h,w]. For cam, G must
/// hold the CAM weights broadcast as [B,K,1,1]; Score-CAM needs the model and is in
/// compute_saliency only.
torch::Tensor raw_map(SaliencyMethod method, const torch::Tensor& activations, const torch::Tensor& gradients);

/// pytorch-grad-cam's scale_cam_image after its ReLU: maps [N,h,w] -> ReLU, min-max per
/// map, then (when height and width > 0) bilinear resize with half-pixel centres.
torch::Tensor postprocess_maps(const torch::Tensor& maps, std::int64_t height, std::int64_t width);

class Classifier;

/// One of our classifiers with a feature map (Capabilities::feature_map) as a
/// saliency model: its target layers are its stages but the last (Classifier::stages);
/// CAM uses Classifier::cam_weights. The classifier is put in evaluation mode and its
/// parameters stop requiring gradients while the returned model lives (both are put
/// back when it is destroyed).
/// throws c10::Error for a classifier without a feature map.
std::unique_ptr<SaliencyModel> classifier_saliency_model(std::shared_ptr<Classifier> classifier,
                                                         std::string description,
                                                         std::vector<std::string> class_names = {});

/// Eigen-CAM's projection of activations [B,K,h,w] -> [B,h,w] with the sign rule above.
torch::Tensor eigen_projection(const torch::Tensor& activations);

}  // namespace attend::models
