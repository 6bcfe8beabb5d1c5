#pragma once
/// Labelled image sets held in memory (MNIST, Fashion-MNIST or any IDX pair) and
/// their `torch::data` dataset.

#include <torch/data/datasets/base.h>
#include <torch/data/example.h>
#include <torch/types.h>

#include <string>

namespace attend::datasets {

/// Images and labels of one split, as stored on disk.
struct Digits {
  torch::Tensor images;  ///< [N,H,W] or [N,H,W,C] uint8 (C = 1 or 3)
  torch::Tensor labels;  ///< [N] int64
  /// The file the labels were read from ("" when not read from a file); subsets
  /// made with select() keep it and `file_index`.
  std::string labels_file{};
  /// [N] int64: item i's position in labels_file (undefined = i).
  torch::Tensor file_index{};

  std::int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

/// Loads an image IDX file and a label IDX file and checks they agree.
/// throws attend::IoError naming the file when either is unreadable or corrupt, the
/// image rank is not 3 or 4 (with 1 or 3 channels), the labels are not rank 1, or
/// the counts differ.
Digits load_digits(const std::string& images_path, const std::string& labels_path);

/// Loads split "train" or "test" from a folder of standard MNIST-style file names
/// (see find_split).
Digits load_split(const std::string& dir, const std::string& split);

/// Checks every label lies in 0..classes-1.
/// throws attend::IoError naming the labels file, the first bad label and its index
/// in the file.
void check_labels(const Digits& digits, std::int64_t classes);

/// The items at `indices` (labels_file and file positions kept).
Digits select(const Digits& digits, const std::vector<std::int64_t>& indices);

/// `torch::data` dataset over in-memory digits: example i is the image as float
/// [C,H,W] in [0,1] (C = 1 for rank-3 IDX data) and its label as an int64 scalar.
class DigitsDataset : public torch::data::datasets::Dataset<DigitsDataset> {
 public:
  explicit DigitsDataset(Digits digits);

  torch::data::Example<> get(size_t index) override;
  torch::optional<size_t> size() const override;

  const Digits& digits() const { return digits_; }

 private:
  Digits digits_;
};

/// Converts uint8 images [N,H,W] or [N,H,W,C] to float [N,C,H,W] in [0,1].
torch::Tensor images_to_float(const torch::Tensor& images);

}  // namespace attend::datasets
