#pragma once
/// A recurrent classifier that looks through a differentiable glimpse (Gaussian
/// DRAW-style filterbank or affine spatial transformer) and is trained by
/// backpropagation alone: no sampling, no REINFORCE.
///
/// h_0 = 0; for t = 1..T: x_t = glimpse(image, h_{t-1}) [B,C,N,N];
/// g_t = ReLU(W x_t); h_t = LSTM(g_t, h_{t-1}); prediction from h_T.

#include <attend/attention/soft_glimpse.h>
#include <attend/models/enum_names.h>

#include <torch/nn/cloneable.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/rnn.h>
#include <torch/nn/pimpl.h>

#include <nlohmann/json.hpp>

#include <string>

namespace attend::models {

enum class SoftGlimpse { kGaussian, kAffine };
template <>
struct EnumNames<SoftGlimpse> {
  static constexpr const char* what = "soft glimpse";
  static constexpr std::pair<SoftGlimpse, const char*> names[] = {{SoftGlimpse::kGaussian, "gaussian"},
                                                                  {SoftGlimpse::kAffine, "affine"}};
};

struct SoftGlimpseNetOptions {
  TORCH_ARG(std::int64_t, channels) = 1;
  TORCH_ARG(std::int64_t, height) = 60;
  TORCH_ARG(std::int64_t, width) = 60;
  TORCH_ARG(std::int64_t, classes) = 10;
  TORCH_ARG(SoftGlimpse, glimpse) = SoftGlimpse::kGaussian;
  TORCH_ARG(std::int64_t, glimpse_size) = 12;    ///< N
  TORCH_ARG(std::int64_t, glimpses) = 6;         ///< T
  /// Affine glimpse: samples per glimpse pixel and direction (anti-aliasing); 0 =
  /// enough to read the whole image at full resolution, ceil(max(H,W) / N).
  TORCH_ARG(std::int64_t, supersample) = 0;
  TORCH_ARG(std::int64_t, features) = 256;
  TORCH_ARG(std::int64_t, hidden) = 256;

 public:
  void validate() const;
  /// supersample with 0 resolved for these image and glimpse sizes.
  std::int64_t resolved_supersample() const;
  nlohmann::json to_json() const;
  static SoftGlimpseNetOptions from_json(const nlohmann::json& j);
};

struct SoftGlimpseOutput {
  torch::Tensor logits;     ///< [B,classes] class scores
  torch::Tensor log_probs;  ///< [B,classes] their log-softmax
  torch::Tensor centres;    ///< [B,T,2] glimpse centres in [-1,1] (x, y)
  torch::Tensor sides;      ///< [B,T] side of the region read, in pixels
  torch::Tensor glimpses;   ///< [B,T,C,N,N]
};

class SoftGlimpseNetImpl : public torch::nn::Cloneable<SoftGlimpseNetImpl> {
 public:
  explicit SoftGlimpseNetImpl(SoftGlimpseNetOptions options = {});
  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  SoftGlimpseOutput forward(const torch::Tensor& images);
  /// forward(images).logits.
  torch::Tensor logits(const torch::Tensor& images) { return forward(images).logits; }

  SoftGlimpseNetOptions options;
  attention::GaussianGlimpse gaussian{nullptr};
  attention::AffineGlimpse affine{nullptr};
  torch::nn::Linear embed{nullptr}, classifier{nullptr};
  torch::nn::LSTMCell core{nullptr};
};
TORCH_MODULE(SoftGlimpseNet);

}  // namespace attend::models
