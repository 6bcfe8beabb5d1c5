#pragma once
/// Attention pooling: a sequence [B,T,D] to one vector [B,D] (or [...,T,D] to [...,D]).
///   word context (Yang et al. 2016, HAN): u_t = tanh(W h_t + b), a = softmax(u_t . u_w)
///   feed-forward (Raffel & Ellis 2015):   e_t = tanh(w . h_t + b), a = softmax(e_t)

#include <attend/attention/attended.h>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

namespace attend::attention {

enum class PoolingKind { kWordContext, kFeedForward };

struct AttentionPoolingOptions {
  explicit AttentionPoolingOptions(std::int64_t input_size) : input_size_(input_size) {}
  TORCH_ARG(std::int64_t, input_size);
  TORCH_ARG(PoolingKind, kind) = PoolingKind::kWordContext;
  /// Size of u_t for the word-context form (0 = input_size).
  TORCH_ARG(std::int64_t, attention_size) = 0;
};

class AttentionPoolingImpl : public torch::nn::Cloneable<AttentionPoolingImpl> {
 public:
  explicit AttentionPoolingImpl(const AttentionPoolingOptions& options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  /// sequence [B,T,D], mask [B,T] bool -> context [B,D], weights [B,T]. Leading
  /// dimensions are kept: sequence [B,S,T,D] (e.g. S sentences of T words, HAN's word
  /// level), mask [B,S,T] -> context [B,S,D], weights [B,S,T], each sequence pooled alone.
  /// (Pooling has no query: its u_w is learned, so there is no query time axis.)
  Attended forward(const torch::Tensor& sequence, const torch::Tensor& mask = {});

  AttentionPoolingOptions options;
  torch::nn::Linear proj{nullptr};  ///< W, b (word context: D -> A; feed-forward: D -> 1)
  torch::Tensor context_vector;     ///< u_w [A] (word context only)
};
TORCH_MODULE(AttentionPooling);

}  // namespace attend::attention
