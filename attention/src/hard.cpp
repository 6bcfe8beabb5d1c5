#include "attend/attention/hard.h"

#include <attend/attention/mask.h>

#include <torch/torch.h>

#include <cmath>
#include <limits>

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

CategoricalSample categorical_policy(const torch::Tensor& logits, const torch::Tensor& mask, bool sample,
                                     std::optional<at::Generator> generator) {
  TORCH_CHECK(logits.defined() && logits.dim() == 2 && logits.is_floating_point(),
              "categorical_policy: expected floating point logits [B,N], got ",
              logits.defined() ? c10::str(logits.sizes()) : std::string("an undefined tensor"));
  if (mask.defined()) {
    TORCH_CHECK(mask.scalar_type() == torch::kBool && mask.sizes() == logits.sizes(),
                "categorical_policy: expected a bool mask ", logits.sizes(), ", got ", mask.sizes());
    TORCH_CHECK(mask.any(1).all().item<bool>(), "categorical_policy: every row needs an allowed region");
  }
  CategoricalSample s;
  s.probs = masked_softmax(logits, mask);
  const auto log_p = torch::log(s.probs.clamp_min(std::numeric_limits<float>::min()));
  if (sample) {
    s.index = generator ? torch::multinomial(s.probs.detach(), 1, false, *generator).squeeze(1)
                        : torch::multinomial(s.probs.detach(), 1).squeeze(1);
  } else {
    s.index = s.probs.detach().argmax(1);
  }
  s.log_prob = log_p.gather(1, s.index.unsqueeze(1)).squeeze(1);
  s.entropy = -(s.probs * log_p).sum(1);  // masked entries have p = 0 and add nothing
  return s;
}

}  // namespace attend::attention
