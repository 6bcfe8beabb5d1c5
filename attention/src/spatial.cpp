#include "attend/attention/spatial.h"

#include <torch/torch.h>

namespace attend::attention {

SpatialAttentionImpl::SpatialAttentionImpl(const SpatialAttentionOptions& options_) : options(options_) { reset(); }

void SpatialAttentionImpl::reset() {
  attention = register_module(
      "attention", AdditiveAttention(options.query_size(), options.channels(), options.hidden_size()));
}

void SpatialAttentionImpl::pretty_print(std::ostream& stream) const {
  stream << "attend::attention::SpatialAttention(channels=" << options.channels()
         << ", query_size=" << options.query_size() << ", hidden_size=" << options.hidden_size() << ")";
}

SpatialAttentionImpl::Prepared SpatialAttentionImpl::prepare(const torch::Tensor& features) {
  TORCH_CHECK(features.dim() == 4 && features.size(1) == options.channels(), "SpatialAttention: expected features [B,",
              options.channels(), ",H,W], got ", features.sizes());
  Prepared p;
  p.height = features.size(2);
  p.width = features.size(3);
  // [B,H*W,C] with contiguous rows, made once per image so that every decoding step
  // reads it in place (no copy at all for channels_last features, whose view it is).
  p.values = features.flatten(2).transpose(1, 2).contiguous();
  p.projected_keys = attention->project_keys(p.values);
  return p;
}

Attended SpatialAttentionImpl::forward(const torch::Tensor& features, const torch::Tensor& query,
                                       const torch::Tensor& mask) {
  return forward_prepared(prepare(features), query, mask);
}

Attended SpatialAttentionImpl::forward_prepared(const Prepared& p, const torch::Tensor& query,
                                                const torch::Tensor& mask) {
  const auto b = p.values.size(0);
  TORCH_CHECK(!mask.defined() || (mask.dim() == 3 && mask.size(0) == b && mask.size(1) == p.height &&
                                  mask.size(2) == p.width),
              "SpatialAttention: expected mask [", b, ",", p.height, ",", p.width, "], got ", mask.sizes());
  auto out = attention->forward_projected(query, p.projected_keys, p.values,
                                          mask.defined() ? mask.reshape({b, p.height * p.width}) : mask);
  out.weights = query.dim() == 3 ? out.weights.view({b, query.size(1), p.height, p.width})
                                 : out.weights.view({b, p.height, p.width});
  return out;
}

}  // namespace attend::attention
