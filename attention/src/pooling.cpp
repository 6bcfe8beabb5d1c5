#include "attend/attention/pooling.h"

#include <attend/attention/mask.h>

#include <torch/torch.h>

#include <vector>

namespace attend::attention {

AttentionPoolingImpl::AttentionPoolingImpl(const AttentionPoolingOptions& options_) : options(options_) { reset(); }

void AttentionPoolingImpl::reset() {
  TORCH_CHECK(options.input_size() >= 1 && options.attention_size() >= 0, "AttentionPooling: sizes must be positive");
  if (options.kind() == PoolingKind::kWordContext) {
    const auto a = options.attention_size() > 0 ? options.attention_size() : options.input_size();
    proj = register_module("proj", torch::nn::Linear(options.input_size(), a));
    const double bound = 1.0 / std::sqrt(static_cast<double>(a));
    context_vector = register_parameter("context_vector", torch::empty({a}).uniform_(-bound, bound));
  } else {
    proj = register_module("proj", torch::nn::Linear(options.input_size(), 1));
  }
}

void AttentionPoolingImpl::pretty_print(std::ostream& stream) const {
  stream << "attend::attention::AttentionPooling(input_size=" << options.input_size() << ", kind="
         << (options.kind() == PoolingKind::kWordContext ? "word_context" : "feed_forward") << ")";
}

Attended AttentionPoolingImpl::forward(const torch::Tensor& sequence, const torch::Tensor& mask) {
  TORCH_CHECK(sequence.dim() >= 3 && sequence.size(-1) == options.input_size(), "AttentionPooling: expected [B,T,",
              options.input_size(), "] or [B,S,T,", options.input_size(), "] (any leading dimensions), got ",
              sequence.sizes());
  const auto lead = sequence.sizes().slice(0, sequence.dim() - 1);  // [...,T]
  TORCH_CHECK(!mask.defined() || mask.sizes() == lead, "AttentionPooling: expected mask ", lead, ", got ",
              mask.sizes());
  if (sequence.dim() > 3) {  // several sequences per item (e.g. the sentences of a document): fold them
    const auto t = sequence.size(-2), d = sequence.size(-1);
    auto out = forward(sequence.reshape({-1, t, d}), mask.defined() ? mask.reshape({-1, t}) : mask);
    std::vector<std::int64_t> shape(lead.begin(), lead.end());
    out.weights = out.weights.view(shape);
    shape.back() = d;
    out.context = out.context.view(shape);
    return out;
  }
  const auto scores = options.kind() == PoolingKind::kWordContext
                          ? torch::matmul(torch::tanh(proj(sequence)), context_vector)
                          : torch::tanh(proj(sequence)).squeeze(2);
  Attended out;
  out.weights = masked_softmax(scores, mask);
  out.context = torch::bmm(out.weights.to(sequence.scalar_type()).unsqueeze(1), sequence).squeeze(1);
  return out;
}

}  // namespace attend::attention
