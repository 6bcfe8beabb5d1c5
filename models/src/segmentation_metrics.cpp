#include "attend/models/segmentation_metrics.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

namespace attend::models {

SegmentationScores::SegmentationScores(std::int64_t classes, std::int64_t ignore)
    : classes_(classes), ignore_(ignore), confusion_(torch::zeros({classes, classes}, torch::kInt64)) {
  TORCH_CHECK(classes >= 2, "segmentation scores: at least 2 classes (background and one), got ", classes);
}

SegmentationScores::SegmentationScores(const SegmentationScores& other)
    : classes_(other.classes_), ignore_(other.ignore_), confusion_(other.confusion_.clone()) {}

SegmentationScores& SegmentationScores::operator=(const SegmentationScores& other) {
  classes_ = other.classes_;
  ignore_ = other.ignore_;
  confusion_ = other.confusion_.clone();
  return *this;
}

void SegmentationScores::add(const torch::Tensor& predicted, const torch::Tensor& truth) {
  TORCH_CHECK(predicted.sizes() == truth.sizes(), "segmentation scores: prediction ", predicted.sizes(),
              " and truth ", truth.sizes(), " differ in shape");
  const auto p = predicted.to(torch::kInt64).flatten();
  const auto t = truth.to(torch::kInt64).flatten();
  const auto counted = t != ignore_;
  const auto tc = t.masked_select(counted), pc = p.masked_select(counted);
  if (tc.numel() == 0) return;
  const auto bad_truth = (tc < 0) | (tc >= classes_);
  TORCH_CHECK(!bad_truth.any().item<bool>(), "segmentation scores: true label ",
              tc.masked_select(bad_truth)[0].item<std::int64_t>(), " is outside 0..", classes_ - 1, " (and not ",
              ignore_, ")");
  const auto bad_prediction = (pc < 0) | (pc >= classes_);
  TORCH_CHECK(!bad_prediction.any().item<bool>(), "segmentation scores: predicted label ",
              pc.masked_select(bad_prediction)[0].item<std::int64_t>(), " is outside 0..", classes_ - 1);
  confusion_ += torch::bincount(tc * classes_ + pc, {}, classes_ * classes_).view({classes_, classes_});
}

namespace {
double ratio(std::int64_t a, std::int64_t b) {
  return b == 0 ? std::numeric_limits<double>::quiet_NaN() : static_cast<double>(a) / static_cast<double>(b);
}
}  // namespace

std::vector<double> SegmentationScores::iou() const {
  const auto tp = confusion_.diagonal(), truth = confusion_.sum(1), pred = confusion_.sum(0);
  std::vector<double> out;
  for (std::int64_t c = 0; c < classes_; ++c) {
    const auto i = tp[c].item<std::int64_t>();
    out.push_back(ratio(i, truth[c].item<std::int64_t>() + pred[c].item<std::int64_t>() - i));
  }
  return out;
}

std::vector<double> SegmentationScores::precision() const {
  const auto tp = confusion_.diagonal(), pred = confusion_.sum(0);
  std::vector<double> out;
  for (std::int64_t c = 0; c < classes_; ++c) out.push_back(ratio(tp[c].item<std::int64_t>(), pred[c].item<std::int64_t>()));
  return out;
}

std::vector<double> SegmentationScores::recall() const {
  const auto tp = confusion_.diagonal(), truth = confusion_.sum(1);
  std::vector<double> out;
  for (std::int64_t c = 0; c < classes_; ++c) out.push_back(ratio(tp[c].item<std::int64_t>(), truth[c].item<std::int64_t>()));
  return out;
}

double SegmentationScores::mean_iou() const {
  double sum = 0;
  int n = 0;
  for (const double v : iou()) {
    if (std::isnan(v)) continue;
    sum += v;
    ++n;
  }
  return n == 0 ? std::numeric_limits<double>::quiet_NaN() : sum / n;
}

double SegmentationScores::pixel_accuracy() const {
  return ratio(confusion_.diagonal().sum().item<std::int64_t>(), confusion_.sum().item<std::int64_t>());
}

double SegmentationScores::object_as_background() const {
  const auto objects = confusion_.narrow(0, 1, classes_ - 1);
  return ratio(objects.select(1, 0).sum().item<std::int64_t>(), objects.sum().item<std::int64_t>());
}

double SegmentationScores::object_as_other_object() const {
  const auto objects = confusion_.narrow(0, 1, classes_ - 1);
  const auto right = objects.narrow(1, 1, classes_ - 1).diagonal().sum();
  const auto other = objects.narrow(1, 1, classes_ - 1).sum() - right;
  return ratio(other.item<std::int64_t>(), objects.sum().item<std::int64_t>());
}

double SegmentationScores::background_as_object() const {
  const auto background = confusion_[0];
  return ratio(background.narrow(0, 1, classes_ - 1).sum().item<std::int64_t>(), background.sum().item<std::int64_t>());
}

}  // namespace attend::models
