#include "attend/datasets/digits.h"

#include <attend/datasets/idx.h>
#include <attend/io_error.h>

#include <torch/torch.h>

namespace attend::datasets {

Digits load_digits(const std::string& images_path, const std::string& labels_path) {
  auto images = read_idx(images_path);
  auto labels = read_idx(labels_path);
  if (images.dim() != 3 && images.dim() != 4) {
    throw IoError(images_path, "expected images of rank 3 [N,H,W] or 4 [N,H,W,C], found sizes " +
                                   c10::str(images.sizes()));
  }
  if (images.dim() == 4 && images.size(3) != 1 && images.size(3) != 3) {
    throw IoError(images_path, "expected 1 or 3 channels, found sizes " + c10::str(images.sizes()));
  }
  if (images.size(0) == 0 || images.size(1) == 0 || images.size(2) == 0) {
    throw IoError(images_path, "holds no image pixels, sizes " + c10::str(images.sizes()));
  }
  if (labels.dim() != 1) {
    throw IoError(labels_path, "expected labels of rank 1 [N], found sizes " + c10::str(labels.sizes()));
  }
  if (labels.size(0) != images.size(0)) {
    throw IoError(labels_path, "holds " + std::to_string(labels.size(0)) + " labels but " + images_path +
                                   " holds " + std::to_string(images.size(0)) + " images");
  }
  Digits digits{images, labels.to(torch::kInt64)};
  digits.labels_file = labels_path;
  return digits;
}

void check_labels(const Digits& digits, std::int64_t classes) {
  if (!digits.labels.defined() || digits.size() == 0) return;
  const auto bad = (digits.labels < 0).logical_or(digits.labels >= classes).nonzero();
  if (bad.size(0) == 0) return;
  const auto i = bad[0][0].item<std::int64_t>();
  const auto position = digits.file_index.defined() ? digits.file_index[i].item<std::int64_t>() : i;
  throw IoError(digits.labels_file.empty() ? std::string("labels") : digits.labels_file,
                "label " + std::to_string(digits.labels[i].item<std::int64_t>()) + " at index " +
                    std::to_string(position) + " is outside 0.." + std::to_string(classes - 1) + " (" +
                    std::to_string(bad.size(0)) + " of " + std::to_string(digits.size()) + " labels are; " +
                    std::to_string(classes) + " classes)");
}

Digits select(const Digits& digits, const std::vector<std::int64_t>& indices) {
  const auto index = torch::tensor(indices, torch::kInt64);
  Digits out{digits.images.index_select(0, index), digits.labels.index_select(0, index)};
  out.labels_file = digits.labels_file;
  out.file_index = digits.file_index.defined() ? digits.file_index.index_select(0, index) : index;
  return out;
}

Digits load_split(const std::string& dir, const std::string& split) {
  const auto files = find_split(dir, split);
  return load_digits(files.images, files.labels);
}

torch::Tensor images_to_float(const torch::Tensor& images) {
  TORCH_CHECK(images.scalar_type() == torch::kUInt8 && (images.dim() == 3 || images.dim() == 4),
              "images_to_float: expected uint8 images [N,H,W] or [N,H,W,C], got ", images.scalar_type(), " ",
              images.sizes());
  auto nchw = images.dim() == 3 ? images.unsqueeze(1) : images.permute({0, 3, 1, 2});
  return nchw.to(torch::kFloat32).div_(255.0f).contiguous();
}

DigitsDataset::DigitsDataset(Digits digits) : digits_(std::move(digits)) {
  TORCH_CHECK(digits_.images.defined() && digits_.labels.defined() &&
                  digits_.images.size(0) == digits_.labels.size(0),
              "DigitsDataset: images and labels must be defined and of equal count");
}

torch::data::Example<> DigitsDataset::get(size_t index) {
  const auto i = static_cast<std::int64_t>(index);
  TORCH_CHECK(i < digits_.size(), "DigitsDataset: index ", i, " out of range for ", digits_.size(), " images");
  auto image = images_to_float(digits_.images.narrow(0, i, 1)).squeeze(0);
  return {image, digits_.labels[i]};
}

torch::optional<size_t> DigitsDataset::size() const { return static_cast<size_t>(digits_.size()); }

}  // namespace attend::datasets
