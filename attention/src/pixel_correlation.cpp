#include "attend/attention/pixel_correlation.h"

#include <torch/torch.h>

namespace attend::attention {

namespace {
constexpr double kEps = 1e-5;
}

PixelCorrelationImpl::PixelCorrelationImpl(const PixelCorrelationOptions& options_) : options(options_) { reset(); }

void PixelCorrelationImpl::reset() {
  TORCH_CHECK(options.in_channels() >= 1 && options.embed_channels() >= 1,
              "PixelCorrelation: channels must be positive, got ", options.in_channels(), " -> ",
              options.embed_channels());
  projection = register_module(
      "projection",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(options.in_channels(), options.embed_channels(), 1).bias(false)));
  torch::NoGradGuard no_grad;
  torch::nn::init::xavier_uniform_(projection->weight, options.init_gain());
}

void PixelCorrelationImpl::pretty_print(std::ostream& stream) const {
  stream << "attend::attention::PixelCorrelation(" << options.in_channels() << " -> " << options.embed_channels()
         << ")";
}

Attended PixelCorrelationImpl::forward(const torch::Tensor& features, const torch::Tensor& maps) {
  TORCH_CHECK(features.dim() == 4 && features.size(1) == options.in_channels(),
              "PixelCorrelation: expected features [B,", options.in_channels(), ",h,w], got ", features.sizes());
  TORCH_CHECK(maps.dim() == 4 && maps.size(0) == features.size(0) && maps.size(2) == features.size(2) &&
                  maps.size(3) == features.size(3),
              "PixelCorrelation: maps ", maps.sizes(), " do not match features ", features.sizes(),
              " (expected [B,C,h,w] on the same grid)");
  const auto b = features.size(0), h = features.size(2), w = features.size(3);
  const auto embedded = projection->forward(features).flatten(2);  // [B,E,N]
  auto out = correlate(embedded, maps.flatten(2), options.weights());
  out.context = out.context.view({b, maps.size(1), h, w});
  return out;
}

Attended PixelCorrelationImpl::correlate(const torch::Tensor& embeddings, const torch::Tensor& maps, bool weights) {
  TORCH_CHECK(embeddings.dim() == 3 && maps.dim() == 3 && maps.size(0) == embeddings.size(0) &&
                  maps.size(2) == embeddings.size(2),
              "PixelCorrelation: expected embeddings [B,E,N] and maps [B,C,N], got ", embeddings.sizes(), " and ",
              maps.sizes());
  const auto e = embeddings / (embeddings.norm(2, 1, /*keepdim=*/true) + kEps);
  // The one [B,N,N] buffer: e^T e, then ReLU in place.
  auto affinity = torch::bmm(e.transpose(1, 2), e);
  affinity.relu_();
  const auto column_sums = affinity.sum(1, /*keepdim=*/true) + kEps;  // [B,1,N]
  Attended out;
  out.context = torch::bmm(maps.to(affinity.scalar_type()), affinity) / column_sums;
  if (weights) {
    // In place unless autograd saved the buffer for the backward pass.
    if (torch::GradMode::is_enabled() && (affinity.requires_grad() || maps.requires_grad())) {
      out.weights = (affinity.detach() / column_sums.detach());
    } else {
      out.weights = affinity.div_(column_sums);
    }
  }
  return out;
}

}  // namespace attend::attention
