#pragma once
/// Additive (Bahdanau) attention: score(q, k_n) = v^T tanh(W_q q + W_k k_n + b).
/// For step-by-step decoding, project the keys once per sequence with project_keys()
/// and call forward_projected() at every step.

#include <attend/attention/attended.h>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <string>

namespace attend::attention {

struct AdditiveAttentionOptions {
  AdditiveAttentionOptions(std::int64_t query_size, std::int64_t key_size, std::int64_t hidden_size)
      : query_size_(query_size), key_size_(key_size), hidden_size_(hidden_size) {}
  TORCH_ARG(std::int64_t, query_size);
  TORCH_ARG(std::int64_t, key_size);
  TORCH_ARG(std::int64_t, hidden_size);
};

/// Functional form. requires: query_projection [B,H] (W_q q) or [B,T,H] (T queries per
/// item: the steps of a teacher-forced sequence, or k beams of one image),
/// key_projection [B,N,H] (W_k k + b), v [H], values [B,N,Dv], mask [B,N] bool (true =
/// may attend; with T queries also [B,T,N]) or undefined.
/// ensures: context [B,Dv], weights [B,N] for one query per item; context [B,T,Dv],
/// weights [B,T,N] for T, each query's result equal to a call with that query alone.
/// Without gradients and in float32 (a decoding step) it runs a fused kernel: its own
/// vectorised tanh, an online softmax, each key and value read once per query. That
/// kernel reads key_projection, values and the queries in place whatever their strides
/// (a batch expanded over beams, a slice, SpatialAttention's prepared values) as long
/// as each row (the last dimension) is contiguous; only inputs whose rows are not are
/// copied first. With gradients, LibTorch's ops form the [B,T,N,H] tanh arguments.
Attended additive_attention(const torch::Tensor& query_projection, const torch::Tensor& key_projection,
                            const torch::Tensor& v, const torch::Tensor& values, const torch::Tensor& mask = {});

/// The instruction set that kernel uses: "avx512" (AVX-512F), "avx2" (AVX2 and FMA) or
/// "baseline", the best the CPU has. ATEN_CPU_CAPABILITY=default or =avx2 caps it, as
/// it caps LibTorch's own kernels.
std::string additive_decoding_isa();

namespace detail {
/// out[i] = tanh(x[i]) for i < n, computed as that kernel does (for its tests).
void decoding_tanh(const float* x, float* out, std::int64_t n);
/// How many inputs that kernel has copied because their rows were not contiguous,
/// since the program started (for its tests).
std::int64_t decoding_input_copies();
}  // namespace detail

class AdditiveAttentionImpl : public torch::nn::Cloneable<AdditiveAttentionImpl> {
 public:
  AdditiveAttentionImpl(std::int64_t query_size, std::int64_t key_size, std::int64_t hidden_size)
      : AdditiveAttentionImpl(AdditiveAttentionOptions(query_size, key_size, hidden_size)) {}
  explicit AdditiveAttentionImpl(const AdditiveAttentionOptions& options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  /// keys [B,N,Dk] -> [B,N,H]: compute once per sequence.
  torch::Tensor project_keys(const torch::Tensor& keys);
  /// query [B,Dq], keys [B,N,Dk], values [B,N,Dv], mask [B,N] -> context [B,Dv], weights [B,N];
  /// query [B,T,Dq] (T queries per item), mask [B,N] or [B,T,N] -> context [B,T,Dv],
  /// weights [B,T,N], equal to T calls with one query each.
  Attended forward(const torch::Tensor& query, const torch::Tensor& keys, const torch::Tensor& values,
                   const torch::Tensor& mask = {});
  /// As forward, with keys already through project_keys (once per sequence or image,
  /// shared by all T queries or beams of an item).
  Attended forward_projected(const torch::Tensor& query, const torch::Tensor& projected_keys,
                             const torch::Tensor& values, const torch::Tensor& mask = {});

  AdditiveAttentionOptions options;
  torch::nn::Linear query_proj{nullptr}, key_proj{nullptr};
  torch::Tensor v;  ///< [H]
};
TORCH_MODULE(AdditiveAttention);

}  // namespace attend::attention
