#pragma once
/// Scores of label images against ground truth, as PASCAL VOC counts them: a confusion
/// matrix over the classes 0..C-1 (0 = background), pixels whose truth is `ignore`
/// (255, the band around each object) left out; per class IoU = TP / (TP + FP + FN),
/// precision = TP / (TP + FP), recall = TP / (TP + FN); mIoU the mean IoU over the
/// classes that occur in the truth or the prediction (a class absent from both has no
/// IoU and is left out of the mean).

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace attend::models {

class SegmentationScores {
 public:
  /// classes C including the background; requires C >= 2.
  explicit SegmentationScores(std::int64_t classes, std::int64_t ignore = 255);
  /// Copies own their counts (a tensor copy would share them).
  SegmentationScores(const SegmentationScores& other);
  SegmentationScores& operator=(const SegmentationScores& other);
  SegmentationScores(SegmentationScores&&) = default;
  SegmentationScores& operator=(SegmentationScores&&) = default;
  /// Adds predicted and true label images of the same shape (any integer type).
  /// throws c10::Error for mismatched shapes or a label outside 0..C-1 (other than
  /// `ignore` in the truth), naming it.
  void add(const torch::Tensor& predicted, const torch::Tensor& truth);

  std::int64_t classes() const { return classes_; }
  /// [C,C] int64: rows truth, columns prediction.
  const torch::Tensor& confusion() const { return confusion_; }
  /// Per class; NaN for a class absent from both truth and prediction.
  std::vector<double> iou() const;
  std::vector<double> precision() const;
  std::vector<double> recall() const;
  double mean_iou() const;
  /// Fraction of counted pixels labelled correctly.
  double pixel_accuracy() const;
  /// Where the wrong pixels went: of the object pixels (truth > 0), the share labelled
  /// background, and the share labelled another object class; of the background
  /// pixels, the share labelled an object. NaN when there are no such pixels.
  double object_as_background() const;
  double object_as_other_object() const;
  double background_as_object() const;

 private:
  std::int64_t classes_, ignore_;
  torch::Tensor confusion_;
};

}  // namespace attend::models
