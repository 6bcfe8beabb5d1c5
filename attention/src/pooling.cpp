#include "attend/attention/pooling.h"

#include <attend/attention/mask.h>

#include <torch/torch.h>

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
  TORCH_CHECK(sequence.dim() == 3 && sequence.size(2) == options.input_size(), "AttentionPooling: expected [B,T,",
              options.input_size(), "], got ", sequence.sizes());
  TORCH_CHECK(!mask.defined() || (mask.dim() == 2 && mask.size(0) == sequence.size(0) &&
                                  mask.size(1) == sequence.size(1)),
              "AttentionPooling: expected mask [B,T] = [", sequence.size(0), ",", sequence.size(1), "], got ",
              mask.sizes());
  const auto scores = options.kind() == PoolingKind::kWordContext
                          ? torch::matmul(torch::tanh(proj(sequence)), context_vector)
                          : torch::tanh(proj(sequence)).squeeze(2);
  Attended out;
  out.weights = masked_softmax(scores, mask);
  out.context = torch::bmm(out.weights.to(sequence.scalar_type()).unsqueeze(1), sequence).squeeze(1);
  return out;
}

}  // namespace attend::attention
