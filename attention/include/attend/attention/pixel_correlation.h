#pragma once
/// The Pixel Correlation Module of SEAM (Wang et al. 2020, "Self-supervised Equivariant
/// Attention Mechanism for Weakly Supervised Semantic Segmentation"): self-attention
/// over the pixels of a feature map whose values are class activation maps, so each
/// pixel's CAM becomes a mix of the CAMs of the pixels that look like it.
///
/// For features F [B,D,h,w] and maps M [B,C,h,w], N = h*w pixels:
///   e_i   = W f_i / (||W f_i||_2 + eps)     W: 1x1 convolution D -> E, no bias
///   A_ij  = ReLU(e_i . e_j)                   cosine similarity of pixels i and j
///   Â_ij  = A_ij / (sum_i' A_i'j + eps)       each column sums to 1 (over i)
///   M'_cj = sum_i M_ci Â_ij                   the revised maps: M' = M Â
/// eps = 1e-5, as the authors' code. W is initialised Xavier-uniform with gain 4 (the
/// authors' f9).
///
/// Cost: O(B N^2 E) for the affinity and O(B C N^2) for the revision; memory: one
/// [B,N,N] float buffer. The product e^T e is written once and every later step
/// (ReLU, the column normalisation) works in that buffer: the revision is computed as
/// (M A) / colsum(A), which equals M Â without materialising Â. The weights returned
/// are Â in that same buffer when autograd is off; when it is on (training), Â is a
/// second, detached buffer (set `weights(false)` to skip it).

#include <attend/attention/attended.h>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

namespace attend::attention {

struct PixelCorrelationOptions {
  PixelCorrelationOptions(std::int64_t in_channels, std::int64_t embed_channels)
      : in_channels_(in_channels), embed_channels_(embed_channels) {}
  /// D: channels of the features given to forward.
  TORCH_ARG(std::int64_t, in_channels);
  /// E: channels of the projected pixel embeddings.
  TORCH_ARG(std::int64_t, embed_channels);
  /// Xavier-uniform gain of the projection's initial weights.
  TORCH_ARG(double, init_gain) = 4.0;
  /// Return the normalised affinity Â as the weights.
  TORCH_ARG(bool, weights) = true;
};

class PixelCorrelationImpl : public torch::nn::Cloneable<PixelCorrelationImpl> {
 public:
  explicit PixelCorrelationImpl(const PixelCorrelationOptions& options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  /// features [B,D,h,w], maps [B,C,h,w] -> context: the revised maps [B,C,h,w];
  /// weights: Â [B,N,N] (column j = how pixel j's revised value mixes the pixels i),
  /// or undefined with weights(false).
  /// throws c10::Error for mismatched shapes.
  Attended forward(const torch::Tensor& features, const torch::Tensor& maps);

  /// The correlation alone, for embeddings already projected: e [B,E,N] (not yet
  /// normalised), maps [B,C,N] -> revised [B,C,N] and Â (when `weights`).
  static Attended correlate(const torch::Tensor& embeddings, const torch::Tensor& maps, bool weights);

  PixelCorrelationOptions options;
  torch::nn::Conv2d projection{nullptr};
};
TORCH_MODULE(PixelCorrelation);

}  // namespace attend::attention
