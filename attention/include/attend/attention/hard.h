#pragma once
/// Hard-attention policies: stochastic choices of where to look, trained with
/// REINFORCE. The policy owns the distribution maths; the network producing its
/// parameters belongs to the model.

#include <torch/types.h>

#include <optional>

namespace attend::attention {

/// A location drawn from a Gaussian policy.
struct LocationSample {
  torch::Tensor raw;       ///< [B,D] the draw itself (mean + std * noise), before clamping
  torch::Tensor location;  ///< [B,D] raw clamped to [-1,1] and detached: where to look
  torch::Tensor log_prob;  ///< [B] log N(raw; mean, std^2 I), differentiable w.r.t. mean
};

/// Gaussian location policy with fixed standard deviation (Mnih et al. 2014).
/// requires: mean [B,D] floating point; std > 0.
/// ensures:  with `sample`, raw = mean.detach() + std * eps (eps ~ N(0, I) from
///           `generator`, or LibTorch's default generator); otherwise raw = mean
///           detached (the deterministic test-time mode). The log-probability is of
///           the raw (unclamped) value, so it stays a correct density; gradients reach
///           `mean` only through log_prob, never through the location.
LocationSample gaussian_location_policy(const torch::Tensor& mean, double std, bool sample,
                                        std::optional<at::Generator> generator = std::nullopt);

/// A choice among N regions drawn from a categorical policy.
struct CategoricalSample {
  torch::Tensor index;     ///< [B] int64, never a masked region
  torch::Tensor log_prob;  ///< [B] log p(index), differentiable w.r.t. the logits
  torch::Tensor entropy;   ///< [B] entropy of the policy over the allowed regions
  torch::Tensor probs;     ///< [B,N] the policy (zero on masked regions)
};

/// Categorical policy for hard attention over regions (e.g. hard-attention captioning).
/// requires: logits [B,N]; mask [B,N] bool (true = may choose) with at least one
///           allowed region per row, or undefined.
/// ensures:  with `sample`, index ~ p from `generator` (or the default generator);
///           otherwise index = argmax p.
CategoricalSample categorical_policy(const torch::Tensor& logits, const torch::Tensor& mask, bool sample,
                                     std::optional<at::Generator> generator = std::nullopt);

/// log N(x; mean, std^2 I) summed over the last dimension: [B,D] -> [B].
torch::Tensor gaussian_log_prob(const torch::Tensor& x, const torch::Tensor& mean, double std);

}  // namespace attend::attention
