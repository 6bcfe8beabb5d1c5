#include "attend/attention/co_attention.h"

#include <attend/attention/mask.h>

#include <torch/torch.h>

namespace attend::attention {
namespace {

void check_pair(const char* who, const torch::Tensor& x1, const torch::Tensor& x2, const torch::Tensor& mask1,
                const torch::Tensor& mask2) {
  TORCH_CHECK(x1.defined() && x2.defined() && x1.dim() == 3 && x2.dim() == 3 && x1.size(0) == x2.size(0), who,
              ": expected x1 [B,N1,D1] and x2 [B,N2,D2] with one batch size, got ",
              x1.defined() ? c10::str(x1.sizes()) : "undefined", " and ",
              x2.defined() ? c10::str(x2.sizes()) : "undefined");
  TORCH_CHECK(!mask1.defined() || (mask1.scalar_type() == torch::kBool && mask1.dim() == 2 &&
                                   mask1.size(0) == x1.size(0) && mask1.size(1) == x1.size(1)),
              who, ": expected a bool mask1 [", x1.size(0), ",", x1.size(1), "]");
  TORCH_CHECK(!mask2.defined() || (mask2.scalar_type() == torch::kBool && mask2.dim() == 2 &&
                                   mask2.size(0) == x2.size(0) && mask2.size(1) == x2.size(1)),
              who, ": expected a bool mask2 [", x2.size(0), ",", x2.size(1), "]");
}

}  // namespace

CoAttended co_attention(const torch::Tensor& x1, const torch::Tensor& x2, const torch::Tensor& mask1,
                        const torch::Tensor& mask2) {
  check_pair("co_attention", x1, x2, mask1, mask2);
  TORCH_CHECK(x1.size(2) == x2.size(2), "co_attention: both sides need the same feature size, got ", x1.size(2),
              " and ", x2.size(2));
  CoAttended out;
  out.affinity = torch::bmm(x1, x2.transpose(1, 2));
  // Masked positions contribute nothing to the other side's sums.
  auto d = out.affinity;
  if (mask1.defined()) d = d * mask1.unsqueeze(2).to(d.scalar_type());
  if (mask2.defined()) d = d * mask2.unsqueeze(1).to(d.scalar_type());
  out.first_weights = masked_softmax(d.sum(2), mask1);
  out.second_weights = masked_softmax(d.sum(1), mask2);
  out.first = x1 * out.first_weights.to(x1.scalar_type()).unsqueeze(2);
  out.second = x2 * out.second_weights.to(x2.scalar_type()).unsqueeze(2);
  return out;
}

AffinityCoAttended affinity_co_attention(const torch::Tensor& x1, const torch::Tensor& x2, const torch::Tensor& weight,
                                         const torch::Tensor& mask1, const torch::Tensor& mask2) {
  check_pair("affinity_co_attention", x1, x2, mask1, mask2);
  TORCH_CHECK((weight.defined() && weight.dim() == 2 && weight.size(0) == x1.size(2) && weight.size(1) == x2.size(2)) ||
                  (!weight.defined() && x1.size(2) == x2.size(2)),
              "affinity_co_attention: expected weight [", x1.size(2), ",", x2.size(2),
              "] (or none when the feature sizes agree)");
  AffinityCoAttended out;
  const auto left = weight.defined() ? torch::matmul(x1, weight) : x1;
  out.affinity = torch::bmm(left, x2.transpose(1, 2));  // [B,N1,N2]
  out.first_weights = masked_softmax(out.affinity, mask2.defined() ? mask2.unsqueeze(1) : mask2);
  out.second_weights = masked_softmax(out.affinity.transpose(1, 2), mask1.defined() ? mask1.unsqueeze(1) : mask1);
  out.first_context = torch::bmm(out.first_weights.to(x2.scalar_type()), x2);
  out.second_context = torch::bmm(out.second_weights.to(x1.scalar_type()), x1);
  return out;
}

}  // namespace attend::attention
