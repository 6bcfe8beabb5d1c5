#pragma once
/// SEAM (Wang et al. 2020, "Self-supervised Equivariant Attention Mechanism for Weakly
/// Supervised Semantic Segmentation"): a CAM network trained from image-level labels
/// whose CAMs are made consistent under an image transform, and refined by the Pixel
/// Correlation Module (attention/pixel_correlation.h). Losses and inference follow the
/// authors' released code (YudeWang/SEAM, train_SEAM.py, infer_SEAM.py).
///
/// Network (SeamNet), for images [B,C,H,W] and K classes:
/// - backbone: the CAM classifier's blocks (3x3 conv, batch norm, ReLU; cam.h) with
///   2x2 max-pooling after the first `pools` blocks; the last two blocks work at the
///   output stride 2^pools (8 by default).
/// - CAM head: a bias-free 1x1 convolution to K+1 channels, channel 0 the background
///   (kept as in the authors' code, where every use overwrites it; see below).
/// - PCM input: the detached inputs of the last two blocks, each through ReLU(1x1 conv,
///   no bias) to `pcm_reduce` channels, concatenated with the image resized to the grid
///   (bilinear, corners aligned): C + r1 + r2 channels, projected to `pcm_embed`.
/// - PCM maps (no gradient): d = ReLU(cam); d_c = ReLU(d_c - 1e-5) / (max d_c + 1e-5)
///   per channel; d_0 = 1 - max_{c>=1} d_c; foreground entries below the pixel's
///   foreground maximum are set to 0. cam_rv = PCM(features, d).
/// - cam and cam_rv are resized (bilinear, corners aligned) to the input size.
///
/// Losses (y = the image labels [B,K] with a background entry 1 prepended; T = the
/// Siamese transform: rescale by `scale` (bilinear, corners aligned) or a horizontal
/// flip; branch 1 sees x, branch 2 sees T(x), shared weights):
///   norm(p)   = ReLU(ReLU(p) - min - 1e-5) / (max - min + 1e-5), per image and channel,
///               min and max of ReLU(p)
///   L_cls     = (MLSM(GAP(cam1)[fg], y) + MLSM(GAP(cam2)[fg], y)) / 2, MLSM the
///               multi-label soft margin loss (mean binary cross-entropy of the logits),
///               GAP over the grid-level CAMs (the authors pool the CAMs resized to the
///               input size, which only weights the border cells a little less; pooling
///               the grid keeps the logits W . GAP(A), so CAM = Grad-CAM holds)
///   L_min     = (m(cam_rv1) + m(cam_rv2)) / 2, m(r) = the mean over images of
///               sum ReLU(the k = hw/4 smallest values of max_{c>=1} (r*y)_c) / k
///   c1 = T(norm(cam1)) * y, c2 = norm(cam2) * y, r1 = T(norm(cam_rv1)) * y,
///   r2 = norm(cam_rv2) * y (everything at branch 2's size)
///   L_er      = mean |c1[fg] - c2[fg]|                       (L1 over foreground entries;
///               with er_to_copy, c1 detached in this term)
///   then c1_0 = 1 - max_{c>=1} c1_c and c2_0 likewise;
///   onehot(c) = c with every foreground entry below the pixel's foreground maximum
///               set to 0 (background kept)
///   L_ecr     = topmean(|onehot(c2).detach() - r1|) + topmean(|onehot(c1).detach() - r2|),
///               topmean = the mean of the largest 20% of each image's (K+1)hw entries
///               (k = floor(0.2 (K+1) h w)), averaged over images; with ecr_own the
///               targets are swapped to the same branch: onehot(c1) - r1, onehot(c2) - r2
///   L         = L_cls + L_min + w_er L_er + L_ecr; `er`, `ecr` and `min_pool` switch terms
///               off for ablations (the PCM is trained only by L_ecr and L_min); w_er =
///               er_weight (1 as the authors), ramped in over `er_warmup` epochs.
///
/// Inference (seam_cams): for scales {0.5, 1, 1.5, 2} x {identity, flip}: the image
/// resized to round(s H) x round(s W), cam_rv (the raw cam when the PCM is untrained)
/// resized to H x W (bilinear, half-pixel centres), foreground channels times the image
/// labels, flipped back, summed; then ReLU and per class (x - min - 1e-5) / (max - min +
/// 1e-5), values below min + 1e-5 set to 0. Pseudo-masks: argmax over [alpha, cam_1,
/// ..., cam_K] (0 = background, c = class c-1).

#include <attend/attention/pixel_correlation.h>
#include <attend/models/classifier.h>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include <nlohmann/json.hpp>

#include <functional>
#include <vector>

namespace attend::models {

enum class SeamTransform { kRescale, kFlip };

struct SeamOptions {
  TORCH_ARG(std::int64_t, channels) = 3;
  TORCH_ARG(std::int64_t, height) = 128;
  TORCH_ARG(std::int64_t, width) = 128;
  /// K: foreground classes.
  TORCH_ARG(std::int64_t, classes) = 10;
  /// Output channels of each conv block (at least 3 blocks).
  TORCH_ARG(std::vector<std::int64_t>, filters) = std::vector<std::int64_t>{16, 32, 64, 128, 128};
  /// Blocks followed by 2x2 max-pooling: 1..blocks-2 (the last two share the stride).
  TORCH_ARG(std::int64_t, pools) = 3;
  /// Channels the two PCM feature inputs are reduced to.
  TORCH_ARG(std::vector<std::int64_t>, pcm_reduce) = std::vector<std::int64_t>{32, 64};
  /// Channels of the PCM's pixel embeddings.
  TORCH_ARG(std::int64_t, pcm_embed) = 96;
  TORCH_ARG(SeamTransform, transform) = SeamTransform::kRescale;
  /// Rescale factor of branch 2 (0.3 in the authors' code for 448-pixel crops), in
  /// (0,4], not 1: above 1 branch 2 sees an enlarged copy with a finer grid.
  TORCH_ARG(double, scale) = 0.5;
  /// "pixel": a fully supervised upper bound with the same network: the training
  /// loss is the per-pixel cross-entropy of the K+1 CAMs (resized to the input)
  /// against the scenes' label images (255 ignored), plus the classification term;
  /// the SEAM terms and the PCM are unused. "image" (default): image-level labels, the SEAM losses.
  TORCH_ARG(bool, pixel_supervision) = false;
  /// Loss terms (ablations).
  TORCH_ARG(bool, er) = true;
  /// Weight of L_er in L (1 in the authors' code).
  TORCH_ARG(double, er_weight) = 1.0;
  /// Epochs over which L_er's weight ramps in linearly: epoch e (0-based) uses
  /// er_weight * min(1, e / er_warmup); 0 = the full weight from the start. A backbone
  /// learned from scratch needs to classify before its CAMs are worth making
  /// equivariant (docs/results.md).
  TORCH_ARG(std::int64_t, er_warmup) = 0;
  /// Which branches L_er's gradient reaches. false (the authors): both, so the
  /// original image's CAM is pulled towards its transformed copy's as much as the other
  /// way. true ("copy"): only the transformed copy's branch; T(norm(cam1)) is a fixed
  /// target, so what the network sees at full size teaches what it sees rescaled, and
  /// never the other way (an ablation: on object scenes it did not stop ER from costing
  /// full SEAM mIoU, docs/results.md).
  TORCH_ARG(bool, er_to_copy) = false;
  TORCH_ARG(bool, ecr) = true;
  /// L_ecr's targets. false (the authors): each branch's revised CAM against the other
  /// branch's raw CAM, t1 = onehot(c2), t2 = onehot(c1). true ("own"): against its own
  /// branch's, t1 = onehot(c1), t2 = onehot(c2) (an ablation: what the PCM learns when
  /// the two branches' disagreement is taken out of its target, docs/results.md).
  TORCH_ARG(bool, ecr_own) = false;
  TORCH_ARG(bool, min_pool) = true;
  /// Batch norm frozen, as in the authors' ResNet-38: every batch-norm layer normalises
  /// with its running statistics in training too, and its scale and shift are not
  /// trained. Meant for a backbone that starts from a trained one (`--init-from`):
  /// both branches are then normalised alike, whatever their batch statistics.
  TORCH_ARG(bool, frozen_bn) = false;

 public:
  /// Whether the PCM is trained (by L_ecr or L_min), so inference uses cam_rv.
  bool pcm() const { return !pixel_supervision_ && (ecr_ || min_pool_); }
  /// throws c10::Error naming the first invalid value.
  void validate() const;
  nlohmann::json to_json() const;
  static SeamOptions from_json(const nlohmann::json& j);
};

/// One branch's outputs.
struct SeamOutput {
  torch::Tensor grid_cam;     ///< [B,K+1,h,w] raw CAMs at the grid
  torch::Tensor grid_cam_rv;  ///< [B,K+1,h,w] PCM-revised CAMs at the grid
  torch::Tensor cam;       ///< [B,K+1,H,W] raw CAMs at the input size
  torch::Tensor cam_rv;    ///< [B,K+1,H,W] PCM-revised CAMs at the input size
  torch::Tensor affinity;  ///< [B,N,N] the PCM's normalised affinity (detached), N = h*w
};

/// The loss terms of one Siamese step (each a scalar; 0 when switched off).
struct SeamLosses {
  torch::Tensor total, cls, min_pool, er, ecr;
  torch::Tensor pixel;  ///< pixel supervision only
};

class SeamNetImpl : public torch::nn::Cloneable<SeamNetImpl> {
 public:
  explicit SeamNetImpl(SeamOptions options = {});
  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  /// As Module::train; with frozen batch norm its layers stay in evaluation mode.
  void train(bool on = true) override;

  /// The last block's map [B,F,h,w] and (with `pcm_input`) the PCM's feature input
  /// [B,C+r1+r2,h,w] for images [B,C,H,W] (any size that survives the pooling).
  std::pair<torch::Tensor, torch::Tensor> features(const torch::Tensor& images, bool pcm_input = true);
  /// Raw CAMs at the grid [B,K+1,h,w] of the last block's map.
  torch::Tensor cam_head(const torch::Tensor& map) { return classifier->forward(map); }
  /// One branch (any input size): cam and cam_rv at the input size (without
  /// `resize_maps` only at the grid); without `revise` the PCM is skipped (cam_rv and
  /// affinity undefined).
  SeamOutput forward(const torch::Tensor& images, bool revise = true, bool resize_maps = true);
  /// The Siamese losses for images [B,C,H,W] and labels [B,K] (0/1). The terms on
  /// resized CAMs are computed `chunk` images at a time (0: as many as keep each
  /// tensor under 8 MiB); the values do not depend on it.
  SeamLosses losses(const torch::Tensor& images, const torch::Tensor& labels, std::int64_t chunk = 0);
  /// Sets the ramp of L_er's weight for training epoch `epoch` (0-based):
  /// w_er = er_weight * min(1, epoch / er_warmup).
  void set_epoch(std::int64_t epoch);
  /// The current weight w_er of L_er in `total` (er_weight until set_epoch is called).
  double er_factor() const { return er_factor_; }
  /// With pixel supervision: `pixel` = the mean cross-entropy over the pixels of masks
  /// [B,H,W] (0 background, c+1 class c) that are not 255, plus `cls` as in losses()
  /// on the one branch (so the pooled CAMs still classify); total = pixel + cls.
  SeamLosses pixel_losses(const torch::Tensor& images, const torch::Tensor& labels, const torch::Tensor& masks,
                          std::int64_t chunk = 0);
  /// Stage i of the backbone (0-based; pooling before block i when block i-1 pools).
  torch::Tensor stage(std::size_t i, const torch::Tensor& x);
  std::size_t blocks() const { return options.filters().size(); }
  /// The grid {h, w} for an input of height x width.
  std::pair<std::int64_t, std::int64_t> grid(std::int64_t height, std::int64_t width) const;

  SeamOptions options;
  torch::nn::ModuleList convs{nullptr};
  torch::nn::Conv2d classifier{nullptr};           ///< the CAM head, K+1 outputs, no bias
  torch::nn::Conv2d reduce1{nullptr}, reduce2{nullptr};
  attention::PixelCorrelation pcm{nullptr};

 private:
  double er_factor_ = 1.0;
};
TORCH_MODULE(SeamNet);

/// The pieces of the losses, exposed for tests (formulas above).
namespace seam {
/// norm(p) per image and channel of [B,C,h,w].
torch::Tensor max_norm(const torch::Tensor& p);
/// The PCM's input maps from raw CAMs [B,K+1,h,w] (no gradient).
torch::Tensor pcm_maps(const torch::Tensor& cam);
/// Foreground entries below each pixel's foreground maximum set to 0; background kept.
torch::Tensor max_onehot(const torch::Tensor& c);
/// Mean over images of the mean of the largest `fraction` of each image's entries.
torch::Tensor top_mean(const torch::Tensor& x, double fraction);
/// m(r) of L_min for r*y foreground [B,K,h,w].
torch::Tensor min_pool_loss(const torch::Tensor& foreground);
/// Background channel := 1 - max foreground, of [B,K+1,h,w].
torch::Tensor with_background(const torch::Tensor& c);
/// T applied to maps [B,C,H,W]: rescaled by `scale` (bilinear, corners aligned, to
/// floor(scale H) x floor(scale W)) or flipped horizontally.
torch::Tensor transform(const torch::Tensor& maps, SeamTransform kind, double scale);
}  // namespace seam

/// Multi-scale x flip aggregation of CAMs for images [B,C,H,W] and labels [B,K]:
/// [B,K,H,W] in [0,1] (formula above). `use_pcm` picks cam_rv; `scales` default
/// {0.5, 1, 1.5, 2}; `flip` adds the flipped passes.
struct CamInference {
  TORCH_ARG(std::vector<double>, scales) = std::vector<double>{0.5, 1.0, 1.5, 2.0};
  TORCH_ARG(bool, flip) = true;
  /// false: return the plain sum of the passes (no ReLU, no scaling).
  TORCH_ARG(bool, normalise) = true;
};
/// The function a model gives for one pass: images [B,C,h,w] -> foreground CAMs
/// [B,K,h,w] at that pass's input size.
using CamPass = std::function<torch::Tensor(const torch::Tensor&)>;
torch::Tensor aggregate_cams(const CamPass& pass, const torch::Tensor& images, const torch::Tensor& labels,
                             const CamInference& inference = {});
/// The normalisation aggregate_cams applies to its sum, for maps [..., H, W] (any
/// leading dimensions, e.g. [B,K,H,W] or [K,H,W]): per map, ReLU, then
/// (x - min - 1e-5) / (max - min + 1e-5), values below min + 1e-5 set to 0.
torch::Tensor normalise_cams(const torch::Tensor& sums);
/// Label images [B,H,W] int64 from CAMs [B,K,H,W] in [0,1]: argmax over [alpha, cams].
torch::Tensor pseudo_masks(const torch::Tensor& cams, double alpha);

/// Model kind "seam" (registered): a SeamNet behind the Classifier interface, trained
/// on multi-hot labels [B,K]; its logits are GAP(cam)[fg] (a class is predicted when
/// > 0), its training loss the Siamese SEAM loss. Saliency stages conv1..convN, head.
class SeamClassifier : public Classifier {
 public:
  explicit SeamClassifier(const nlohmann::json& options);
  std::string kind() const override { return "seam"; }
  nlohmann::json options() const override { return net->options.to_json(); }
  torch::nn::Module& module() override { return *net; }
  std::int64_t channels() const override { return net->options.channels(); }
  std::int64_t height() const override { return net->options.height(); }
  std::int64_t width() const override { return net->options.width(); }
  std::int64_t classes() const override { return net->options.classes(); }
  bool multi_label() const override { return true; }
  ClassifierLoss loss(const torch::Tensor& images, const torch::Tensor& targets) override;
  /// With pixel supervision, the pixel loss on the batch's masks (required).
  ClassifierLoss loss(const datasets::LabelledBatch& batch) override;
  void set_epoch(std::int64_t epoch, std::int64_t /*epochs*/) override { net->set_epoch(epoch); }
  torch::Tensor logits(const torch::Tensor& images) override;
  std::vector<Stage> stages() override;
  torch::Tensor cam_weights(const std::string& name) override;

  SeamNet net{nullptr};
};

}  // namespace attend::models
