#include "attend/attention/dot_product.h"

#include <attend/attention/mask.h>

#include <torch/torch.h>

#include <cmath>

namespace attend::attention {

Attended scaled_dot_product_attention(const torch::Tensor& query, const torch::Tensor& key,
                                      const torch::Tensor& value, const torch::Tensor& mask,
                                      const torch::Tensor& bias, double dropout, bool training,
                                      std::optional<double> scale) {
  TORCH_CHECK(query.defined() && key.defined() && value.defined() && query.dim() >= 2 &&
                  key.dim() == query.dim() && value.dim() == query.dim(),
              "scaled_dot_product_attention: expected query [...,Tq,D], key [...,Tk,D], value [...,Tk,Dv] of one "
              "rank, got ",
              query.sizes(), ", ", key.sizes(), ", ", value.sizes());
  TORCH_CHECK(query.size(-1) == key.size(-1), "scaled_dot_product_attention: query and key feature sizes differ: ",
              query.size(-1), " vs ", key.size(-1));
  TORCH_CHECK(key.size(-2) == value.size(-2), "scaled_dot_product_attention: key and value lengths differ: ",
              key.size(-2), " vs ", value.size(-2));
  TORCH_CHECK(dropout >= 0.0 && dropout < 1.0, "scaled_dot_product_attention: dropout must be in [0,1), got ",
              dropout);
  TORCH_CHECK(!bias.defined() || bias.is_floating_point(), "scaled_dot_product_attention: bias must be floating "
              "point (use `mask` for a bool mask), got ", bias.scalar_type());
  const double s = scale.value_or(1.0 / std::sqrt(static_cast<double>(query.size(-1))));
  auto scores = torch::matmul(query, key.transpose(-2, -1)) * s;
  if (bias.defined()) scores = scores + bias.to(scores.scalar_type());
  Attended out;
  out.weights = masked_softmax(scores, mask);
  auto used = out.weights;
  if (training && dropout > 0.0) used = torch::dropout(used, dropout, /*train=*/true);
  out.context = torch::matmul(used.to(value.scalar_type()), value);
  return out;
}

}  // namespace attend::attention
