#pragma once
/// Soft spatial attention over a feature map given a query (Show, Attend and Tell):
/// the H*W locations of [B,C,H,W] are the keys and values of additive attention.

#include <attend/attention/additive.h>

namespace attend::attention {

struct SpatialAttentionOptions {
  SpatialAttentionOptions(std::int64_t channels, std::int64_t query_size, std::int64_t hidden_size)
      : channels_(channels), query_size_(query_size), hidden_size_(hidden_size) {}
  TORCH_ARG(std::int64_t, channels);
  TORCH_ARG(std::int64_t, query_size);
  TORCH_ARG(std::int64_t, hidden_size);
};

class SpatialAttentionImpl : public torch::nn::Cloneable<SpatialAttentionImpl> {
 public:
  explicit SpatialAttentionImpl(const SpatialAttentionOptions& options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  /// features [B,C,H,W] -> the [B,H*W,C] sequence (contiguous: copied here once per
  /// image, or a view of channels_last features) and its key projection [B,H*W,A];
  /// compute once per image when decoding step by step. The decoding step reads both
  /// in place, with no per-step copy.
  struct Prepared {
    torch::Tensor values, projected_keys;
    std::int64_t height = 0, width = 0;
  };
  Prepared prepare(const torch::Tensor& features);
  /// query [B,Dq], mask [B,H,W] bool or undefined -> context [B,C], weights [B,H,W];
  /// query [B,k,Dq] (k beams, or k steps, per image) -> context [B,k,C], weights
  /// [B,k,H,W], each equal to a call with that query alone; the image's keys and values
  /// are shared by its k queries, not expanded.
  Attended forward(const torch::Tensor& features, const torch::Tensor& query, const torch::Tensor& mask = {});
  Attended forward_prepared(const Prepared& prepared, const torch::Tensor& query, const torch::Tensor& mask = {});

  SpatialAttentionOptions options;
  AdditiveAttention attention{nullptr};
};
TORCH_MODULE(SpatialAttention);

}  // namespace attend::attention
