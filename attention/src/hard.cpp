#include "attend/attention/hard.h"

#include <torch/torch.h>

#include <cmath>

namespace attend::attention {

torch::Tensor gaussian_log_prob(const torch::Tensor& x, const torch::Tensor& mean, double std) {
  TORCH_CHECK(std > 0 && std::isfinite(std), "gaussian_log_prob: std must be > 0, got ", std);
  const auto z = (x - mean) / std;
  const double log_norm = std::log(std) + 0.5 * std::log(2.0 * M_PI);
  return (-0.5 * z * z - log_norm).sum(-1);
}

LocationSample gaussian_location_policy(const torch::Tensor& mean, double std, bool sample,
                                        std::optional<at::Generator> generator) {
  TORCH_CHECK(mean.defined() && mean.dim() == 2 && mean.is_floating_point(),
              "gaussian_location_policy: expected a floating point mean [B,D], got ",
              mean.defined() ? c10::str(mean.sizes()) : std::string("an undefined tensor"));
  TORCH_CHECK(std > 0 && std::isfinite(std), "gaussian_location_policy: std must be > 0, got ", std);
  LocationSample s;
  const auto centre = mean.detach();
  if (sample) {
    auto noise = generator ? at::normal(0.0, 1.0, mean.sizes(), *generator, mean.options())
                           : torch::randn(mean.sizes(), mean.options());
    s.raw = centre + std * noise;
  } else {
    s.raw = centre.clone();
  }
  s.log_prob = gaussian_log_prob(s.raw, mean, std);
  s.location = s.raw.clamp(-1.0, 1.0);
  return s;
}

}  // namespace attend::attention
