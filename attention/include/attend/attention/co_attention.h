#pragma once
/// Co-attention between two sequences (e.g. image regions and words).

#include <torch/types.h>

namespace attend::attention {

/// Parallel co-attention by summed affinities: D = X1 X2^T [B,N1,N2];
/// w1 = softmax over N1 of D's row sums, w2 = softmax over N2 of its column sums;
/// each side reweighted by its weights.
struct CoAttended {
  torch::Tensor first;           ///< [B,N1,D] X1 * w1
  torch::Tensor second;          ///< [B,N2,D] X2 * w2
  torch::Tensor first_weights;   ///< [B,N1]
  torch::Tensor second_weights;  ///< [B,N2]
  torch::Tensor affinity;        ///< [B,N1,N2]
};

/// requires: x1 [B,N1,D], x2 [B,N2,D]; masks [B,N1] / [B,N2] bool or undefined.
/// Masked positions get zero weight and are left out of the other side's sums.
CoAttended co_attention(const torch::Tensor& x1, const torch::Tensor& x2, const torch::Tensor& mask1 = {},
                        const torch::Tensor& mask2 = {});

/// Affinity-matrix co-attention: A = X1 W X2^T (W = identity when undefined); each
/// position of one side attends over the other.
struct AffinityCoAttended {
  torch::Tensor first_context;   ///< [B,N1,D2]: for each x1 position, attended x2
  torch::Tensor second_context;  ///< [B,N2,D1]: for each x2 position, attended x1
  torch::Tensor first_weights;   ///< [B,N1,N2], rows sum to 1 over allowed x2
  torch::Tensor second_weights;  ///< [B,N2,N1], rows sum to 1 over allowed x1
  torch::Tensor affinity;        ///< [B,N1,N2]
};

/// requires: x1 [B,N1,D1], x2 [B,N2,D2], weight [D1,D2] (or undefined when D1 == D2).
AffinityCoAttended affinity_co_attention(const torch::Tensor& x1, const torch::Tensor& x2,
                                         const torch::Tensor& weight = {}, const torch::Tensor& mask1 = {},
                                         const torch::Tensor& mask2 = {});

}  // namespace attend::attention
