#include "attend/attention/mask.h"

#include <torch/torch.h>

#include <limits>

namespace attend::attention {

torch::Tensor padding_mask(const torch::Tensor& lengths, std::int64_t max_len) {
  TORCH_CHECK(lengths.defined() && lengths.dim() == 1 && !lengths.is_floating_point(),
              "padding_mask: expected integer lengths of shape [B], got ",
              lengths.defined() ? c10::str(lengths.sizes()) : std::string("an undefined tensor"));
  TORCH_CHECK(max_len >= 0, "padding_mask: max_len must be >= 0, got ", max_len);
  if (lengths.numel() > 0) {
    TORCH_CHECK(lengths.min().item<std::int64_t>() >= 0 && lengths.max().item<std::int64_t>() <= max_len,
                "padding_mask: lengths must lie in [0, ", max_len, "], got min ", lengths.min().item<std::int64_t>(),
                " and max ", lengths.max().item<std::int64_t>());
  }
  auto positions = torch::arange(max_len, torch::TensorOptions().dtype(torch::kInt64).device(lengths.device()));
  return positions.unsqueeze(0) < lengths.to(torch::kInt64).unsqueeze(1);
}

torch::Tensor causal_mask(std::int64_t query_len, std::int64_t key_len, torch::Device device) {
  TORCH_CHECK(query_len >= 1 && query_len <= key_len, "causal_mask: expected 1 <= query_len <= key_len, got ",
              query_len, " and ", key_len);
  auto opts = torch::TensorOptions().dtype(torch::kInt64).device(device);
  auto q = torch::arange(query_len, opts).unsqueeze(1) + (key_len - query_len);
  auto k = torch::arange(key_len, opts).unsqueeze(0);
  return k <= q;
}

torch::Tensor additive_bias(const torch::Tensor& mask, torch::ScalarType dtype) {
  TORCH_CHECK(mask.defined() && mask.scalar_type() == torch::kBool, "additive_bias: expected a bool mask");
  return torch::zeros(mask.sizes(), mask.options().dtype(dtype))
      .masked_fill(mask.logical_not(), -std::numeric_limits<double>::infinity());
}

torch::Tensor masked_softmax(const torch::Tensor& scores, const torch::Tensor& mask, std::int64_t dim) {
  TORCH_CHECK(scores.defined() && scores.is_floating_point(), "masked_softmax: expected floating point scores");
  // At least float32: half and bfloat16 scores are promoted, double stays double.
  auto s = scores.scalar_type() == torch::kDouble ? scores : scores.to(torch::kFloat32);
  // Blocked entries become -inf, so they get exactly exp(-inf) = 0 in every row that
  // has a finite entry, and LibTorch's fused softmax does the rest in one kernel.
  auto filled = s;
  if (mask.defined()) {
    TORCH_CHECK(mask.scalar_type() == torch::kBool, "masked_softmax: expected a bool mask (true = may attend), got ",
                mask.scalar_type());
    filled = s.masked_fill(mask.logical_not(), -std::numeric_limits<double>::infinity());
  }
  if (filled.dim() == 0 || filled.size(dim) == 0) return torch::softmax(filled, dim);
  // A row can be blocked by the mask or by -inf scores (an additive_bias() without a
  // mask): either way it has no finite entry, and softmax alone would give 0/0.
  torch::Tensor alive;
  {
    torch::NoGradGuard no_grad;
    // != rather than >: a row holding a NaN is alive, so the NaN spreads as in softmax.
    alive = torch::amax(filled, dim, /*keepdim=*/true) != -std::numeric_limits<double>::infinity();
  }
  if (alive.all().item<bool>()) return torch::softmax(filled, dim);
  // Rows with nothing allowed: softmax over zeros (finite, gradient 0 after the
  // product), then zeroed.
  return torch::softmax(filled.masked_fill(alive.logical_not(), 0.0), dim) * alive;
}

}  // namespace attend::attention
