#pragma once
/// The one mask convention of attend::attention: a bool tensor in which `true`
/// means "may attend". Masks broadcast against the scores they apply to.
///
/// Numeric rules shared by every attention function:
/// - softmax is computed in at least float32 (half and bfloat16 are promoted,
///   double stays double so gradients can be checked by finite differences);
/// - masked positions get exactly zero weight;
/// - a row with no allowed position gives all-zero weights (and so a zero context)
///   with finite gradients, never NaN; so does a row whose every score is -inf
///   because of a float bias (additive_bias()), with or without a bool mask.

#include <torch/types.h>

namespace attend::attention {

/// lengths [B] int -> mask [B,max_len] bool: position j of row b is allowed when
/// j < lengths[b]. requires 0 <= lengths <= max_len.
torch::Tensor padding_mask(const torch::Tensor& lengths, std::int64_t max_len);

/// Causal mask [Tq,Tk] bool for queries that are the last Tq of Tk positions:
/// query i may attend key j when j <= i + (Tk - Tq). requires 1 <= Tq <= Tk.
torch::Tensor causal_mask(std::int64_t query_len, std::int64_t key_len,
                          torch::Device device = torch::kCPU);

/// The same mask as an additive float bias: 0 where allowed, -inf where blocked (the
/// form LibTorch's own attention modules take as a float attn_mask).
torch::Tensor additive_bias(const torch::Tensor& mask, torch::ScalarType dtype = torch::kFloat32);

/// Softmax of `scores` over `dim` restricted to `mask` (true = allowed; undefined
/// means all allowed; broadcastable to scores). Computed and returned in float32
/// (float64 for double scores). Masked positions and -inf scores are exactly 0. A row
/// with no finite allowed score (fully masked, or blocked only by -inf scores, e.g.
/// from additive_bias() with no mask) is all 0 with zero, finite gradient; other rows
/// sum to 1, except that a NaN among a row's allowed scores makes the whole row NaN
/// (as softmax does).
torch::Tensor masked_softmax(const torch::Tensor& scores, const torch::Tensor& mask, std::int64_t dim = -1);

}  // namespace attend::attention
