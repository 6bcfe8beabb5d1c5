#include "attend/vision/glimpse.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace attend::vision {

void check_retina_options(const RetinaOptions& options, std::int64_t height, std::int64_t width) {
  TORCH_CHECK(options.size() >= 1 && options.size() <= 1024, "retina: glimpse size must be in 1..1024, got ",
              options.size());
  TORCH_CHECK(options.scales() >= 1 && options.scales() <= 16, "retina: scales must be in 1..16, got ",
              options.scales());
  TORCH_CHECK(options.ratio() > 0 && std::isfinite(options.ratio()), "retina: scale ratio must be > 0, got ",
              options.ratio());
  TORCH_CHECK(height >= 1 && width >= 1, "retina: empty image ", height, "x", width);
  const double coarsest = static_cast<double>(options.size()) * std::pow(options.ratio(), options.scales() - 1);
  TORCH_CHECK(coarsest <= 64.0 * static_cast<double>(std::max(height, width)),
              "retina: the coarsest patch (", coarsest, " px) is absurdly larger than the ", height, "x", width,
              " image");
}

torch::Tensor area_weights(const torch::Tensor& starts, const torch::Tensor& sides, std::int64_t size,
                           std::int64_t n, c10::optional<torch::ScalarType> dtype) {
  TORCH_CHECK(starts.dim() == 2 && sides.dim() == 1 && sides.size(0) == starts.size(1),
              "area_weights: expected starts [B,k] and sides [k], got ", starts.sizes(), " and ", sides.sizes());
  const auto b = starts.size(0), k = starts.size(1);
  auto out = torch::zeros({b, k, size, n}, starts.options().dtype(dtype.value_or(starts.scalar_type())));
  const auto s64 = starts.to(torch::kFloat64).contiguous();
  const auto side64 = sides.to(torch::kFloat64).contiguous();
  const double* start = s64.data_ptr<double>();
  const double* side = side64.data_ptr<double>();
  // Cell u of patch j spans [lo, hi) = [start + u*cell, start + (u+1)*cell); pixel i
  // covers [i, i+1). Only the few pixels under a cell are visited.
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "area_weights", [&] {
    scalar_t* w = out.data_ptr<scalar_t>();
    at::parallel_for(0, b * k, 64, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t bj = begin; bj < end; ++bj) {
        const double cell = side[bj % k] / static_cast<double>(size);
        for (std::int64_t u = 0; u < size; ++u) {
          const double lo = start[bj] + static_cast<double>(u) * cell, hi = lo + cell;
          scalar_t* row = w + (bj * size + u) * n;
          const auto first = std::max<std::int64_t>(0, static_cast<std::int64_t>(std::floor(lo)));
          const auto last = std::min<std::int64_t>(n, static_cast<std::int64_t>(std::ceil(hi)));
          for (std::int64_t i = first; i < last; ++i) {
            const double overlap = std::min(hi, static_cast<double>(i + 1)) - std::max(lo, static_cast<double>(i));
            if (overlap > 0) row[i] = static_cast<scalar_t>(overlap / cell);
          }
        }
      }
    });
  });
  return out;
}

namespace {

/// Non-zero area weights of one output cell along one axis: pixels first..first+count-1.
struct CellWeights {
  std::int64_t first = 0;
  std::int64_t count = 0;
  double weight[80];  // a cell covers at most 64*max(H,W)/g + 2 pixels; see check below
};

/// Weights of the g cells of a patch starting at `start` with cells of `cell` pixels
/// over an axis of n pixels.
void cell_weights(double start, double cell, std::int64_t g, std::int64_t n, std::vector<CellWeights>& out) {
  out.resize(static_cast<size_t>(g));
  for (std::int64_t u = 0; u < g; ++u) {
    const double lo = start + static_cast<double>(u) * cell, hi = lo + cell;
    auto& cw = out[static_cast<size_t>(u)];
    cw.first = std::max<std::int64_t>(0, static_cast<std::int64_t>(std::floor(lo)));
    const auto last = std::min<std::int64_t>(n, static_cast<std::int64_t>(std::ceil(hi)));
    cw.count = std::max<std::int64_t>(0, last - cw.first);
    for (std::int64_t i = 0; i < cw.count; ++i) {
      const double px = static_cast<double>(cw.first + i);
      cw.weight[i] = std::max(0.0, std::min(hi, px + 1.0) - std::max(lo, px)) / cell;
    }
  }
}

/// Direct evaluation visiting only the pixels under each cell: the same numbers as
/// the dense products, without autograd (used when no gradient is needed).
torch::Tensor glimpses_direct(const torch::Tensor& images, const torch::Tensor& x0, const torch::Tensor& y0,
                              const std::vector<double>& sides, std::int64_t g) {
  const auto b = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  const auto k = static_cast<std::int64_t>(sides.size());
  auto out = torch::zeros({b, k, c, g, g}, images.options());
  const auto img = images.contiguous();
  const double* xs = x0.data_ptr<double>();
  const double* ys = y0.data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES(images.scalar_type(), "extract_glimpses", [&] {
    const scalar_t* src = img.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, b * k, 16, [&](std::int64_t begin, std::int64_t end) {
      std::vector<CellWeights> wx, wy;
      std::vector<double> tmp(static_cast<size_t>(w));
      for (std::int64_t bj = begin; bj < end; ++bj) {
        const auto bi = bj / k, j = bj % k;
        const double cell = sides[static_cast<size_t>(j)] / static_cast<double>(g);
        cell_weights(xs[bj], cell, g, w, wx);
        cell_weights(ys[bj], cell, g, h, wy);
        // Columns of the image under the patch (possibly none).
        const double span = sides[static_cast<size_t>(j)];
        const std::int64_t x_first = std::clamp<std::int64_t>(static_cast<std::int64_t>(std::floor(xs[bj])), 0, w);
        const std::int64_t x_last =
            std::clamp<std::int64_t>(static_cast<std::int64_t>(std::ceil(xs[bj] + span)), x_first, w);
        for (std::int64_t ch = 0; ch < c; ++ch) {
          const scalar_t* plane = src + (bi * c + ch) * h * w;
          scalar_t* patch = dst + ((bi * k + j) * c + ch) * g * g;
          for (std::int64_t v = 0; v < g; ++v) {
            const auto& ry = wy[static_cast<size_t>(v)];
            if (ry.count == 0) continue;
            for (std::int64_t x = x_first; x < x_last; ++x) tmp[static_cast<size_t>(x)] = 0.0;
            for (std::int64_t t = 0; t < ry.count; ++t) {
              const scalar_t* row = plane + (ry.first + t) * w;
              const double wgt = ry.weight[t];
              for (std::int64_t x = x_first; x < x_last; ++x) tmp[static_cast<size_t>(x)] += wgt * row[x];
            }
            for (std::int64_t u = 0; u < g; ++u) {
              const auto& rx = wx[static_cast<size_t>(u)];
              double acc = 0.0;
              for (std::int64_t t = 0; t < rx.count; ++t) acc += rx.weight[t] * tmp[static_cast<size_t>(rx.first + t)];
              patch[v * g + u] = static_cast<scalar_t>(acc);
            }
          }
        }
      }
    });
  });
  return out;
}

}  // namespace

torch::Tensor extract_glimpses(const torch::Tensor& images, const torch::Tensor& locations,
                               const RetinaOptions& options) {
  TORCH_CHECK(images.defined() && images.dim() == 4 && images.is_floating_point(),
              "extract_glimpses: expected floating point images [B,C,H,W], got ",
              images.defined() ? c10::str(images.sizes()) : std::string("an undefined tensor"));
  TORCH_CHECK(locations.defined() && locations.dim() == 2 && locations.size(1) == 2 &&
                  locations.size(0) == images.size(0),
              "extract_glimpses: expected locations [B,2] with B = ", images.size(0), ", got ",
              locations.defined() ? c10::str(locations.sizes()) : std::string("an undefined tensor"));
  const auto h = images.size(2), w = images.size(3);
  check_retina_options(options, h, w);
  const auto g = options.size(), k = options.scales();
  // Geometry in double: exact corners for the weights, whatever the image dtype.
  const auto dopts = torch::TensorOptions().dtype(torch::kFloat64).device(images.device());
  auto sides = torch::pow(torch::full({k}, options.ratio(), dopts), torch::arange(k, dopts)) * static_cast<double>(g);
  const auto loc = locations.detach().to(torch::kFloat64);
  const auto cx = (loc.select(1, 0) + 1.0) * 0.5 * static_cast<double>(w);                    // [B]
  const auto cy = (loc.select(1, 1) + 1.0) * 0.5 * static_cast<double>(h);
  const auto x0 = cx.unsqueeze(1) - sides.unsqueeze(0) * 0.5;                                // [B,k]
  const auto y0 = cy.unsqueeze(1) - sides.unsqueeze(0) * 0.5;
  const bool needs_grad = torch::GradMode::is_enabled() && images.requires_grad();
  // Cells of the coarsest patch span ratio^(k-1) pixels; the direct path's fixed
  // per-cell buffer holds up to 64 of them.
  if (!needs_grad && images.device().is_cpu() && std::pow(options.ratio(), k - 1) <= 64.0) {
    std::vector<double> side_list(static_cast<size_t>(k));
    for (std::int64_t j = 0; j < k; ++j) side_list[static_cast<size_t>(j)] = sides[j].item<double>();
    return glimpses_direct(images, x0.contiguous(), y0.contiguous(), side_list, g);
  }
  const auto wx = area_weights(x0, sides, g, w, images.scalar_type());                    // [B,k,g,W]
  const auto wy = area_weights(y0, sides, g, h, images.scalar_type());                    // [B,k,g,H]
  const auto b = images.size(0), c = images.size(1);
  // Two batched products, each one bmm call over the whole batch:
  // rows[b] = Wy[b] (k*g x H) @ img[b] (H x C*W), then out[b,j] = rows[b,j] @ Wx[b,j]^T.
  const auto columns = images.permute({0, 2, 1, 3}).reshape({b, h, c * w});                // [B,H,C*W]
  const auto rows = torch::bmm(wy.reshape({b, k * g, h}), columns);                           // [B,k*g,C*W]
  const auto out = torch::bmm(rows.view({b * k, g * c, w}), wx.reshape({b * k, g, w}).transpose(1, 2));
  return out.view({b, k, g, c, g}).permute({0, 1, 3, 2, 4}).contiguous();                    // [B,k,C,g,g]
}

PatchBox patch_box(double x, double y, std::int64_t height, std::int64_t width, const RetinaOptions& options,
                   std::int64_t scale) {
  TORCH_CHECK(scale >= 0 && scale < options.scales(), "patch_box: scale ", scale, " outside 0..",
              options.scales() - 1);
  const double side = static_cast<double>(options.size()) * std::pow(options.ratio(), static_cast<double>(scale));
  const double cx = (x + 1.0) * 0.5 * static_cast<double>(width);
  const double cy = (y + 1.0) * 0.5 * static_cast<double>(height);
  return {cx - side / 2, cy - side / 2, side};
}

}  // namespace attend::vision
