#pragma once
/// Luong (multiplicative) attention (Luong, Pham, Manning 2015) with its three scores:
///   dot:     score = q . k                (requires query and key sizes equal)
///   general: score = q . (W k)
///   concat:  score = v . tanh(W [q; k])

#include <attend/attention/attended.h>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

namespace attend::attention {

enum class LuongScore { kDot, kGeneral, kConcat };

struct LuongAttentionOptions {
  LuongAttentionOptions(std::int64_t query_size, std::int64_t key_size) : query_size_(query_size), key_size_(key_size) {}
  TORCH_ARG(std::int64_t, query_size);
  TORCH_ARG(std::int64_t, key_size);
  TORCH_ARG(LuongScore, score) = LuongScore::kGeneral;
  /// Hidden size of the concat score (0 = query_size).
  TORCH_ARG(std::int64_t, hidden_size) = 0;
};

class LuongAttentionImpl : public torch::nn::Cloneable<LuongAttentionImpl> {
 public:
  explicit LuongAttentionImpl(const LuongAttentionOptions& options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  /// query [B,Dq], keys [B,N,Dk] -> scores [B,N] (before masking).
  torch::Tensor score(const torch::Tensor& query, const torch::Tensor& keys);
  /// query [B,Dq], keys [B,N,Dk], values [B,N,Dv], mask [B,N] bool -> context [B,Dv], weights [B,N].
  Attended forward(const torch::Tensor& query, const torch::Tensor& keys, const torch::Tensor& values,
                   const torch::Tensor& mask = {});

  LuongAttentionOptions options;
  torch::nn::Linear key_proj{nullptr};    ///< general: W (Dk -> Dq)
  torch::nn::Linear concat_proj{nullptr}; ///< concat: W ([Dq;Dk] -> H)
  torch::Tensor v;                        ///< concat: [H]
};
TORCH_MODULE(LuongAttention);

}  // namespace attend::attention
