#pragma once
/// Where a captioner's images and captions come from: object scenes generated on the
/// fly, or a caption file in Karpathy's layout with its image folder. Both give
/// batches of same-sized float images with, per image, its reference captions and,
/// when known, its objects' words and boxes and their relation (for grounding).

#include <attend/datasets/captions.h>
#include <attend/datasets/object_scenes.h>

#include <torch/types.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace attend::datasets {

/// What is known about one image.
struct CaptionTarget {
  std::string name;  ///< the image's file name (as `attend score` matches it), or "<split>/<index>" for generated scenes
  std::vector<std::vector<std::string>> references;  ///< tokens of each reference caption
  struct Object {
    std::string word;
    std::array<std::int64_t, 4> bbox{};  ///< x, y, width, height in the image's pixels (after resizing)
  };
  std::vector<Object> objects;           ///< empty when the data set has none
  std::optional<SceneRelation> relation;
};

struct CaptionItems {
  torch::Tensor images;  ///< [B,C,H,W] float in [0,1]
  std::vector<CaptionTarget> targets;
};

class CaptionSource {
 public:
  virtual ~CaptionSource() = default;
  virtual std::int64_t size() const = 0;
  virtual std::int64_t channels() const = 0;
  virtual std::int64_t height() const = 0;
  virtual std::int64_t width() const = 0;
  /// Items `indices` as drawn for `epoch` (generated training scenes change with it).
  /// throws c10::Error for an index out of range.
  virtual CaptionItems get(const std::vector<std::int64_t>& indices, std::int64_t epoch) const = 0;
};

/// Object scenes of one split, generated when asked: a pure function of the
/// generator's seed, the split, the epoch (training split only; val and test are
/// the same every epoch) and the index.
class SceneCaptionSource : public CaptionSource {
 public:
  /// requires count >= 1.
  SceneCaptionSource(std::shared_ptr<const ObjectSceneGenerator> generator, ObjectSplit split, std::int64_t count);
  std::int64_t size() const override { return count_; }
  std::int64_t channels() const override { return generator_->channels(); }
  std::int64_t height() const override { return generator_->options().canvas(); }
  std::int64_t width() const override { return generator_->options().canvas(); }
  CaptionItems get(const std::vector<std::int64_t>& indices, std::int64_t epoch) const override;

 private:
  std::shared_ptr<const ObjectSceneGenerator> generator_;
  ObjectSplit split_;
  std::int64_t count_;
};

/// How FileCaptionSource fits files to the model.
struct CaptionImageShape {
  std::int64_t channels = 1, height = 64, width = 64;
};

/// The channels and size of an image file as it would be read (1 for a grey file, 3
/// otherwise). throws attend::IoError naming the file when it cannot be decoded.
CaptionImageShape probe_caption_image(const CaptionImage& image);

/// The images of a caption set's split, decoded once into memory (uint8), converted
/// to the model's channels and resized (area interpolation) to its size; boxes are
/// scaled with them. Loading runs on `threads` threads.
class FileCaptionSource : public CaptionSource {
 public:
  /// throws attend::IoError naming the first image that cannot be decoded;
  /// c10::Error for an empty split.
  FileCaptionSource(const CaptionSet& set, const std::string& split, CaptionImageShape shape, int threads = 1);
  std::int64_t size() const override { return static_cast<std::int64_t>(targets_.size()); }
  std::int64_t channels() const override { return shape_.channels; }
  std::int64_t height() const override { return shape_.height; }
  std::int64_t width() const override { return shape_.width; }
  CaptionItems get(const std::vector<std::int64_t>& indices, std::int64_t epoch) const override;

  /// Images whose channels were converted (grey to colour or colour to grey).
  std::int64_t converted() const { return converted_; }
  /// Images resized to the model's size.
  std::int64_t resized() const { return resized_; }

 private:
  CaptionImageShape shape_;
  torch::Tensor pixels_;  ///< [N,C,H,W] uint8
  std::vector<CaptionTarget> targets_;
  std::int64_t converted_ = 0, resized_ = 0;
};

}  // namespace attend::datasets
