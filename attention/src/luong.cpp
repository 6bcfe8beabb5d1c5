#include "attend/attention/luong.h"

#include <attend/attention/mask.h>

#include <torch/torch.h>

namespace attend::attention {

LuongAttentionImpl::LuongAttentionImpl(const LuongAttentionOptions& options_) : options(options_) { reset(); }

void LuongAttentionImpl::reset() {
  TORCH_CHECK(options.query_size() >= 1 && options.key_size() >= 1 && options.hidden_size() >= 0 &&
                  options.value_size() >= 0,
              "LuongAttention: expected query_size, key_size >= 1 and hidden_size, value_size >= 0, got ",
              options.query_size(), ", ", options.key_size(), ", ", options.hidden_size(), ", ",
              options.value_size());
  key_proj = nullptr;
  concat_proj = nullptr;
  attentional_proj = nullptr;
  if (options.attentional_hidden()) {
    const auto dv = options.value_size() > 0 ? options.value_size() : options.key_size();
    attentional_proj = register_module(
        "attentional_proj",
        torch::nn::Linear(torch::nn::LinearOptions(dv + options.query_size(), options.query_size()).bias(false)));
  }
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
         << ", key_size=" << options.key_size() << ", score=" << names[static_cast<int>(options.score())]
         << (options.attentional_hidden() ? ", attentional_hidden=true" : "") << ")";
}

torch::Tensor LuongAttentionImpl::score(const torch::Tensor& query, const torch::Tensor& keys) {
  TORCH_CHECK((query.dim() == 2 || query.dim() == 3) && query.size(-1) == options.query_size() && keys.dim() == 3 &&
                  keys.size(0) == query.size(0) && keys.size(2) == options.key_size(),
              "LuongAttention: expected query [B,", options.query_size(), "] or [B,T,", options.query_size(),
              "] and keys [B,N,", options.key_size(), "], got ", query.sizes(), " and ", keys.sizes());
  if (query.dim() == 3) {  // T queries per item: [B,T,N] in one product
    switch (options.score()) {
      case LuongScore::kDot: return torch::matmul(query, keys.transpose(1, 2));
      case LuongScore::kGeneral: return torch::matmul(query, key_proj(keys).transpose(1, 2));
      case LuongScore::kConcat: {
        // W [q; k] = W_q q + W_k k: each side projected once, not the [B,T,N,Dq+Dk] concatenation.
        const auto& weight = concat_proj->weight;  // [H, Dq+Dk]
        const auto q = torch::linear(query, weight.narrow(1, 0, options.query_size()));          // [B,T,H]
        const auto k = torch::linear(keys, weight.narrow(1, options.query_size(), options.key_size()));  // [B,N,H]
        return torch::matmul(torch::tanh(q.unsqueeze(2) + k.unsqueeze(1)), v);
      }
    }
  }
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
  const auto scores = score(query, keys);
  Attended out;
  if (query.dim() == 3) {
    const auto b = keys.size(0), t = query.size(1), n = keys.size(1);
    TORCH_CHECK(!mask.defined() || (mask.dim() == 2 && mask.size(0) == b && mask.size(1) == n) ||
                    (mask.dim() == 3 && mask.size(0) == b && mask.size(1) == t && mask.size(2) == n),
                "LuongAttention: expected mask [B,N] = [", b, ",", n, "] or [B,T,N] = [", b, ",", t, ",", n,
                "], got ", mask.sizes());
    out.weights = masked_softmax(scores, mask.defined() && mask.dim() == 2 ? mask.unsqueeze(1) : mask);
    out.context = torch::bmm(out.weights.to(values.scalar_type()), values);
    return out;
  }
  out.weights = masked_softmax(scores, mask);
  out.context = torch::bmm(out.weights.to(values.scalar_type()).unsqueeze(1), values).squeeze(1);
  return out;
}

torch::Tensor LuongAttentionImpl::attentional_hidden(const torch::Tensor& context, const torch::Tensor& query) {
  TORCH_CHECK(!attentional_proj.is_empty(),
              "LuongAttention::attentional_hidden: build the module with LuongAttentionOptions::attentional_hidden(true)");
  const auto dv = attentional_proj->options.in_features() - options.query_size();
  TORCH_CHECK((context.dim() == 2 || context.dim() == 3) && query.dim() == context.dim() &&
                  context.size(-1) == dv && query.size(-1) == options.query_size() &&
                  context.sizes().slice(0, context.dim() - 1) == query.sizes().slice(0, query.dim() - 1),
              "LuongAttention::attentional_hidden: expected context [B,", dv, "] and query [B,", options.query_size(),
              "] (or [B,T,", dv, "] and [B,T,", options.query_size(), "]), got ", context.sizes(), " and ",
              query.sizes());
  return torch::tanh(attentional_proj(torch::cat({context, query}, -1)));
}

}  // namespace attend::attention
