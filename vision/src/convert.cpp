#include "attend/vision/convert.h"

#include <torch/torch.h>

#include <opencv2/core.hpp>

#include <cstring>

namespace attend::vision {

torch::Tensor mat_to_tensor(const cv::Mat& image, const MatToTensorOptions& options) {
  TORCH_CHECK(!image.empty(), "mat_to_tensor: expected a non-empty image, got an empty cv::Mat");
  TORCH_CHECK(image.dims == 2, "mat_to_tensor: expected a 2-D image, got a Mat of ", image.dims, " dimensions");
  const int depth = image.depth();
  const int channels = image.channels();
  TORCH_CHECK((depth == CV_8U || depth == CV_32F) && (channels == 1 || channels == 3),
              "mat_to_tensor: expected CV_8UC1, CV_8UC3, CV_32FC1 or CV_32FC3, got depth ", depth, " with ",
              channels, " channels");
  TORCH_CHECK(depth == CV_8U || options.to_float(), "mat_to_tensor: to_float(false) needs an 8-bit image");
  const auto dtype = depth == CV_8U ? torch::kUInt8 : torch::kFloat32;
  const auto elem = static_cast<std::int64_t>(image.elemSize1());
  // A view with the Mat's own row step handles non-continuous ROIs without a clone.
  auto view = torch::from_blob(const_cast<uchar*>(image.data), {image.rows, image.cols, channels},
                               {static_cast<std::int64_t>(image.step[0]) / elem, channels, 1}, dtype);
  if (channels == 3 && options.mat_order() != options.tensor_order()) view = view.flip({2});
  auto chw = view.permute({2, 0, 1});
  if (options.to_float()) {
    // to(..., copy=true) always allocates, so the result never aliases the Mat.
    auto out = chw.to(torch::kFloat32, /*non_blocking=*/false, /*copy=*/true, torch::MemoryFormat::Contiguous);
    if (depth == CV_8U) out.div_(255.0f);
    return out;
  }
  return chw.clone(torch::MemoryFormat::Contiguous);
}

torch::Tensor mats_to_tensor(const std::vector<cv::Mat>& images, const MatToTensorOptions& options) {
  TORCH_CHECK(!images.empty(), "mats_to_tensor: expected at least one image");
  std::vector<torch::Tensor> items;
  items.reserve(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    TORCH_CHECK(images[i].size() == images[0].size() && images[i].type() == images[0].type(),
                "mats_to_tensor: image ", i, " is ", images[i].cols, "x", images[i].rows, " of type ",
                images[i].type(), " but image 0 is ", images[0].cols, "x", images[0].rows, " of type ",
                images[0].type());
    items.push_back(mat_to_tensor(images[i], options));
  }
  return torch::stack(items);
}

cv::Mat tensor_to_mat(const torch::Tensor& image, const TensorToMatOptions& options) {
  TORCH_CHECK(image.defined(), "tensor_to_mat: expected a defined tensor");
  TORCH_CHECK(image.dim() == 2 || (image.dim() == 3 && (image.size(0) == 1 || image.size(0) == 3)),
              "tensor_to_mat: expected [H,W] or [C,H,W] with C = 1 or 3, got ", image.sizes());
  TORCH_CHECK(image.scalar_type() == torch::kUInt8 || image.is_floating_point(),
              "tensor_to_mat: expected uint8 or floating point values, got ", image.scalar_type());
  auto chw = image.dim() == 2 ? image.unsqueeze(0) : image;
  chw = chw.detach().cpu();
  if (chw.is_floating_point()) {
    chw = chw.clamp(0.0, 1.0).mul(255.0).round().to(torch::kUInt8);
  }
  const auto channels = chw.size(0);
  if (channels == 3 && options.tensor_order() != options.mat_order()) chw = chw.flip({0});
  auto hwc = chw.permute({1, 2, 0}).contiguous();
  cv::Mat out(static_cast<int>(hwc.size(0)), static_cast<int>(hwc.size(1)),
              channels == 3 ? CV_8UC3 : CV_8UC1);
  std::memcpy(out.data, hwc.data_ptr<std::uint8_t>(), static_cast<size_t>(hwc.numel()));
  return out;
}

std::vector<cv::Mat> tensor_to_mats(const torch::Tensor& batch, const TensorToMatOptions& options) {
  TORCH_CHECK(batch.defined() && batch.dim() == 4, "tensor_to_mats: expected [B,C,H,W], got ",
              batch.defined() ? c10::str(batch.sizes()) : std::string("an undefined tensor"));
  std::vector<cv::Mat> out;
  out.reserve(static_cast<size_t>(batch.size(0)));
  for (std::int64_t i = 0; i < batch.size(0); ++i) out.push_back(tensor_to_mat(batch[i], options));
  return out;
}

}  // namespace attend::vision
