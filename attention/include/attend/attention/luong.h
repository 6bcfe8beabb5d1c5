#pragma once
/// Luong (multiplicative) attention (Luong, Pham, Manning 2015) with its three scores:
///   dot:     score = q . k                (requires query and key sizes equal)
///   general: score = q . (W k)
///   concat:  score = v . tanh(W [q; k])
/// and, as an option, the attentional hidden state of their eq. 5,
///   h~ = tanh(W_c [c; h])   (c the context, h the query: the decoder state),
/// which the decoder feeds to its output layer (and, input feeding, to its next step).

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
  /// Size of the values (0 = key_size); used only by W_c.
  TORCH_ARG(std::int64_t, value_size) = 0;
  /// Register W_c [query_size, value_size + query_size] (no bias, as in the paper's
  /// eq. 5) for attentional_hidden().
  TORCH_ARG(bool, attentional_hidden) = false;
};

class LuongAttentionImpl : public torch::nn::Cloneable<LuongAttentionImpl> {
 public:
  explicit LuongAttentionImpl(const LuongAttentionOptions& options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  /// query [B,Dq], keys [B,N,Dk] -> scores [B,N] (before masking);
  /// query [B,T,Dq] (T queries per item, e.g. the T steps of a teacher-forced
  /// sequence) -> scores [B,T,N].
  torch::Tensor score(const torch::Tensor& query, const torch::Tensor& keys);
  /// query [B,Dq], keys [B,N,Dk], values [B,N,Dv], mask [B,N] bool -> context [B,Dv], weights [B,N];
  /// query [B,T,Dq], mask [B,N] or [B,T,N] -> context [B,T,Dv], weights [B,T,N], equal to
  /// T calls with one query each.
  Attended forward(const torch::Tensor& query, const torch::Tensor& keys, const torch::Tensor& values,
                   const torch::Tensor& mask = {});
  /// h~ = tanh(W_c [context; query]) (eq. 5). requires the attentional_hidden option;
  /// context [B,Dv] and query [B,Dq], or [B,T,Dv] and [B,T,Dq] -> [B,Dq] or [B,T,Dq].
  torch::Tensor attentional_hidden(const torch::Tensor& context, const torch::Tensor& query);

  LuongAttentionOptions options;
  torch::nn::Linear key_proj{nullptr};          ///< general: W (Dk -> Dq)
  torch::nn::Linear concat_proj{nullptr};       ///< concat: W ([Dq;Dk] -> H)
  torch::Tensor v;                              ///< concat: [H]
  torch::nn::Linear attentional_proj{nullptr};  ///< W_c ([Dv;Dq] -> Dq), no bias, with the option
};
TORCH_MODULE(LuongAttention);

}  // namespace attend::attention
