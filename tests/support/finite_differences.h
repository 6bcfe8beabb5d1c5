#pragma once
/// Gradient check: autograd against central finite differences, in double precision.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>

namespace attend::testing {

/// f maps x (converted to double) to a scalar; every partial derivative is compared.
inline void expect_gradient_matches_finite_differences(const std::function<torch::Tensor(const torch::Tensor&)>& f,
                                                       torch::Tensor x, double tolerance = 1e-6) {
  x = x.detach().to(torch::kFloat64).requires_grad_(true);
  f(x).backward();
  const auto analytic = x.grad().reshape(-1).clone();
  auto flat = x.detach().view(-1);
  auto numeric = torch::zeros_like(flat);
  const double eps = 1e-6;
  for (std::int64_t i = 0; i < flat.numel(); ++i) {
    const double keep = flat[i].item<double>();
    flat[i] = keep + eps;
    const double up = f(x.detach()).item<double>();
    flat[i] = keep - eps;
    const double down = f(x.detach()).item<double>();
    flat[i] = keep;
    numeric[i] = (up - down) / (2 * eps);
  }
  EXPECT_TRUE(torch::allclose(analytic, numeric, tolerance, tolerance))
      << "max difference " << (analytic - numeric).abs().max().item<double>();
}

}  // namespace attend::testing
