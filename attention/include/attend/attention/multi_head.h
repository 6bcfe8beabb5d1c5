#pragma once
/// Multi-head attention, batch-first. Unlike torch::nn::MultiheadAttention in
/// LibTorch 1.13 (sequence-first, and a bool attn_mask that is added as 0/1 rather
/// than blocking), masks follow mask.h: bool, true = may attend, and they block.
/// Weights of a torch::nn::MultiheadAttention load unchanged with load_from().

#include <attend/attention/attended.h>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <optional>

namespace attend::attention {

struct MultiHeadAttentionOptions {
  MultiHeadAttentionOptions(std::int64_t embed_dim, std::int64_t num_heads)
      : embed_dim_(embed_dim), num_heads_(num_heads) {}
  TORCH_ARG(std::int64_t, embed_dim);
  TORCH_ARG(std::int64_t, num_heads);
  /// Feature size of keys and values (0 = embed_dim).
  TORCH_ARG(std::int64_t, kdim) = 0;
  TORCH_ARG(std::int64_t, vdim) = 0;
  /// Dropout on the attention weights used for the context (training only).
  TORCH_ARG(double, dropout) = 0.0;
  TORCH_ARG(bool, bias) = true;
};

/// Projected keys and values of the positions seen so far, per head: [B,H,T,d].
struct KvCache {
  torch::Tensor keys, values;
  std::int64_t length() const { return keys.defined() ? keys.size(2) : 0; }
  /// Beam search: keeps, for each new sequence i, the cache of sequence index[i].
  /// requires: index [B'] int64 with 0 <= index < B (B' may differ from B: expanding
  ///           B images to B*k beams, or pruning). Nothing to do on an empty cache.
  /// ensures:  keys, values [B',H,T,d] = index_select(0, index) of the old ones.
  void reorder(const torch::Tensor& index);
};

/// Which weights to return.
enum class HeadWeights { kAverage, kPerHead };

struct HeadAttentionOptions {
  /// Factor on q k^T (unset = 1/sqrt(d)).
  TORCH_ARG(std::optional<double>, scale) = std::nullopt;
  /// Dropout on the weights used for the context; applied only when `training`.
  TORCH_ARG(double, dropout) = 0.0;
  TORCH_ARG(bool, training) = false;
  TORCH_ARG(HeadWeights, weights) = HeadWeights::kAverage;
  /// Size in bytes of the block of score matrices computed at once (at least one
  /// row of one head). Blocks stay in cache (the last level: 32 MiB here) between the
  /// score product, the softmax and the value product; the results do not depend on
  /// it. 8 MiB makes the whole batch one block up to L = 16 at B = 32, E = 512.
  TORCH_ARG(std::int64_t, block_bytes) = 8 << 20;
};

/// The functional twin of MultiHeadAttention after the projections: scaled
/// dot-product attention of H heads, computed block by block over (batch, head)
/// pairs. It writes every block straight into its results and never materialises
/// all score matrices at once (unless per-head weights are asked for). With
/// gradients (float32/float64, a bias without gradient) it keeps only q, k and v
/// (and with dropout which weights were kept, one byte each) for backward, which
/// recomputes each block's weights in cache; with a bias that needs gradients or
/// reduced precision, LibTorch's ops record the whole computation.
/// requires: q [B,H,Tq,d], k [B,H,Tk,d], v [B,H,Tk,dv] (any strides), one floating dtype;
///           mask bool and bias float, each 4-D with sizes [B|1, H|1, Tq|1, Tk]
///           (mask.h rules: true = may attend, blocking; bias is added to the scores).
/// ensures:  context [B,H,Tq,dv]; weights [B,Tq,Tk] averaged over heads or
///           [B,H,Tq,Tk] per head (float32, float64 for double input), before
///           dropout; equal to scaled_dot_product_attention() on the same inputs
///           (rows with no allowed key, by mask or by a -inf bias, give zeros).
Attended attend_heads(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                      const torch::Tensor& mask = {}, const torch::Tensor& bias = {},
                      const HeadAttentionOptions& options = {});

class MultiHeadAttentionImpl : public torch::nn::Cloneable<MultiHeadAttentionImpl> {
 public:
  MultiHeadAttentionImpl(std::int64_t embed_dim, std::int64_t num_heads)
      : MultiHeadAttentionImpl(MultiHeadAttentionOptions(embed_dim, num_heads)) {}
  explicit MultiHeadAttentionImpl(const MultiHeadAttentionOptions& options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  /// requires: query [B,Tq,E], key [B,Tk,kdim], value [B,Tk,vdim];
  ///           key_mask [B,Tk] bool (true = may attend; e.g. padding_mask());
  ///           attn_mask bool [Tq,Tk] or [B,Tq,Tk] (e.g. causal_mask());
  ///           bias float [Tq,Tk], [B,Tq,Tk] or [B,H,Tq,Tk], added to the scores.
  /// ensures:  context [B,Tq,E]; weights [B,Tq,Tk] averaged over heads, or
  ///           [B,H,Tq,Tk] per head, before dropout. Rows blocked entirely (by the
  ///           masks, or by -inf in `bias`): zero weights, finite gradients.
  Attended forward(const torch::Tensor& query, const torch::Tensor& key, const torch::Tensor& value,
                   const torch::Tensor& key_mask = {}, const torch::Tensor& attn_mask = {},
                   const torch::Tensor& bias = {}, HeadWeights weights = HeadWeights::kAverage);

  /// Incremental decoding: projects new_key/new_value [B,Tn,..] once, appends them to
  /// `cache`, and attends `query` [B,Tq,E] over every cached position. With `causal`,
  /// query i (the last Tq positions) sees only positions up to its own.
  /// ensures: the same context as forward() over the whole sequence with causal_mask().
  Attended forward_step(const torch::Tensor& query, const torch::Tensor& new_key, const torch::Tensor& new_value,
                        KvCache& cache, bool causal = true, HeadWeights weights = HeadWeights::kAverage);

  /// Copies the parameters of a LibTorch module of the same sizes (packed or separate
  /// input projections). throws c10::Error naming the mismatch otherwise.
  void load_from(const torch::nn::MultiheadAttention& other);

  /// The input projections of queries, keys and values: weight [E,E|kdim|vdim] and
  /// bias [E] (undefined without bias). Views into the packed parameters when
  /// kdim == vdim == E.
  torch::Tensor projection_weight(int which) const;
  torch::Tensor projection_bias(int which) const;

  MultiHeadAttentionOptions options;
  /// Parameters laid out as in torch::nn::MultiheadAttention: when kdim == vdim == E
  /// the three input projections are packed in in_proj_weight [3E,E] (so
  /// self-attention projects with one matrix product); otherwise q_proj_weight [E,E],
  /// k_proj_weight [E,kdim], v_proj_weight [E,vdim]. in_proj_bias [3E] with bias.
  bool packed() const { return in_proj_weight.defined(); }
  torch::Tensor in_proj_weight, q_proj_weight, k_proj_weight, v_proj_weight, in_proj_bias;
  torch::nn::Linear out_proj{nullptr};

 private:
  HeadAttentionOptions head_options(HeadWeights weights) const;
  torch::Tensor project(const torch::Tensor& x, int which) const;
};
TORCH_MODULE(MultiHeadAttention);

}  // namespace attend::attention
