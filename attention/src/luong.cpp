#include "attend/attention/luong.h"

#include <attend/attention/mask.h>

#include <torch/torch.h>

namespace attend::attention {

LuongAttentionImpl::LuongAttentionImpl(const LuongAttentionOptions& options_) : options(options_) { reset(); }

void LuongAttentionImpl::reset() {
  TORCH_CHECK(options.query_size() >= 1 && options.key_size() >= 1 && options.hidden_size() >= 0,
              "LuongAttention: sizes must be positive");
  key_proj = nullptr;
  concat_proj = nullptr;
  switch (options.score()) {
    case LuongScore::kDot:
      TORCH_CHECK(options.query_size() == options.key_size(), "LuongAttention: the dot score needs query_size (",
                  options.query_size(), ") == key_size (", options.key_size(), ")");
      break;
    case LuongScore::kGeneral:
      key_proj = register_module(
          "key_proj", torch::nn::Linear(torch::nn::LinearOptions(options.key_size(), options.query_size()).bias(false)));
      break;
    case LuongScore::kConcat: {
      const auto h = options.hidden_size() > 0 ? options.hidden_size() : options.query_size();
      concat_proj = register_module("concat_proj", torch::nn::Linear(torch::nn::LinearOptions(
                                                       options.query_size() + options.key_size(), h).bias(false)));
      const double bound = 1.0 / std::sqrt(static_cast<double>(h));
      v = register_parameter("v", torch::empty({h}).uniform_(-bound, bound));
      break;
    }
  }
}

void LuongAttentionImpl::pretty_print(std::ostream& stream) const {
  const char* names[] = {"dot", "general", "concat"};
  stream << "attend::attention::LuongAttention(query_size=" << options.query_size()
         << ", key_size=" << options.key_size() << ", score=" << names[static_cast<int>(options.score())] << ")";
}

torch::Tensor LuongAttentionImpl::score(const torch::Tensor& query, const torch::Tensor& keys) {
  TORCH_CHECK(query.dim() == 2 && query.size(1) == options.query_size() && keys.dim() == 3 &&
                  keys.size(0) == query.size(0) && keys.size(2) == options.key_size(),
              "LuongAttention: expected query [B,", options.query_size(), "] and keys [B,N,", options.key_size(),
              "], got ", query.sizes(), " and ", keys.sizes());
  switch (options.score()) {
    case LuongScore::kDot: return torch::bmm(keys, query.unsqueeze(2)).squeeze(2);
    case LuongScore::kGeneral: return torch::bmm(key_proj(keys), query.unsqueeze(2)).squeeze(2);
    case LuongScore::kConcat: {
      const auto n = keys.size(1);
      const auto both = torch::cat({query.unsqueeze(1).expand({query.size(0), n, query.size(1)}), keys}, 2);
      return torch::matmul(torch::tanh(concat_proj(both)), v);
    }
  }
  TORCH_CHECK(false, "LuongAttention: unknown score");
}

Attended LuongAttentionImpl::forward(const torch::Tensor& query, const torch::Tensor& keys,
                                     const torch::Tensor& values, const torch::Tensor& mask) {
  TORCH_CHECK(values.dim() == 3 && values.size(0) == keys.size(0) && values.size(1) == keys.size(1),
              "LuongAttention: expected values [B,N,Dv] matching keys ", keys.sizes(), ", got ", values.sizes());
  Attended out;
  out.weights = masked_softmax(score(query, keys), mask);
  out.context = torch::bmm(out.weights.to(values.scalar_type()).unsqueeze(1), values).squeeze(1);
  return out;
}

}  // namespace attend::attention
