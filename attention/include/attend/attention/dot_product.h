#pragma once
/// Scaled dot-product attention (Vaswani et al. 2017), batch-first, with the masking
/// rules of mask.h: `mask` is bool, true = may attend; `bias` is an optional float
/// tensor added to the scores (e.g. a relative-position bias, or -inf to block).

#include <attend/attention/attended.h>

#include <torch/types.h>

#include <optional>

namespace attend::attention {

/// requires: query [...,Tq,D], key [...,Tk,D], value [...,Tk,Dv] with equal leading
///           dimensions (e.g. [B,Tq,D] or [B,H,Tq,D]); mask bool and bias float, each
///           broadcastable to [...,Tq,Tk]; 0 <= dropout < 1.
/// ensures:  context [...,Tq,Dv] in value's dtype; weights [...,Tq,Tk] (float32, or
///           float64 for double input) = softmax(q k^T * scale + bias) over allowed keys,
///           before dropout; rows with no allowed key (masked, or -inf in `bias` at
///           every key) give zero weights and context, with finite gradients.
///           scale defaults to 1/sqrt(D). Dropout (only when training) applies to the
///           weights used for the context, scaled by 1/(1-p).
Attended scaled_dot_product_attention(const torch::Tensor& query, const torch::Tensor& key,
                                      const torch::Tensor& value, const torch::Tensor& mask = {},
                                      const torch::Tensor& bias = {}, double dropout = 0.0, bool training = false,
                                      std::optional<double> scale = std::nullopt);

}  // namespace attend::attention
