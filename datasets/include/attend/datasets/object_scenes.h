#pragma once
/// Object scenes: seeded multi-object images with, for every object, its class, tight
/// box, grid cell and pixel mask, and captions that describe the layout. They are the
/// data on which captioning, saliency and weakly supervised segmentation can be
/// *checked*, because where every object is, is known.
///
/// How a scene is made (pixels in integer arithmetic; the few double steps (sizes,
/// offsets, comparisons) are compiled without FMA contraction; all randomness from a
/// counter-based stream; so a seed gives the same bytes on every machine):
/// 1. The number of objects n is drawn from [objects_min, objects_max]; their items
///    from the split's pool (distinct classes if asked).
/// 2. Each item's 28x28 frame is resized (bilinear, 16.16 fixed point) to a side drawn
///    from [size_min, size_max] x canvas. Its mask is the resized pixels whose value is
///    above `mask_threshold`; its tight box bounds that mask.
/// 3. Each object gets its own cell of the 3x3 grid (never two in a cell) and its
///    tight box's centre is put at the cell's centre plus a uniform offset of up to
///    `jitter` x half a cell on each axis, moved inward if the box would leave the
///    canvas. A layout is redrawn (up to `max_attempts` times) when a centre left its
///    cell, two tight boxes overlap by more than `max_overlap` of the smaller box's area,
///    or (two objects) the relation is ambiguous.
/// 4. The background is painted (black, smooth noise, or low-contrast clutter fragments
///    cut from other items of the same split), then the objects in order, each over
///    what is below it: out = (a*colour + (255-a)*below)/255 with a the resized pixel.
///    In colour, each object (and each clutter fragment) gets a random hue.
///
/// Masks: `instances` holds k+1 where object k is the top object whose resized pixel
/// is above the threshold (so the top one wins where objects overlap), else 0.
/// `labels` is the VOC-style label image: 0 background, class+1 on each object's
/// visible mask, and 255 ("ignore") on a 1-pixel band just outside every object: a
/// pixel that is 4-adjacent to an object drawn above whatever the pixel shows.
///
/// Relations (two objects, A = object 0, B = object 1, centres in pixels): with
/// dx = B.x - A.x, dy = B.y - A.y and m = relation_margin, "A left of B" when
/// dx >= m and |dx| - |dy| >= m; "right of" when -dx does; "above" when dy >= m and
/// |dy| - |dx| >= m; "below" when -dy does. Any other layout is ambiguous and redrawn.
///
/// Captions (tokens are the words of the sentence; "an" before 8):
/// - 1 object:  "a 3 at the top left" ("at the center", "at the top", ...).
/// - 2 objects: "a 3 to the left of a 7" and "a 7 to the right of a 3"
///              ("above" / "below" for the vertical relations); the first names
///              the left (or upper) object first, whichever is object 0, so that
///              training on first captions has one word order (captioners
///              trained on both orders hedge the first object word).
/// - 3 or more: objects in reading order of their cells, joined by "and":
///              "a 3 at the top left and a 7 at the center and a 1 at the bottom right".
///
/// Splits: items of the "train" and "val" splits come from the source's train file
/// (item i is in val when i % 10 == 9, else in train), "test" items from its t10k
/// file, so no glyph is in two splits. Clutter is cut from the same split's items.

#include <attend/datasets/digits.h>
#include <attend/datasets/source.h>

#include <torch/arg.h>
#include <torch/data/datasets/base.h>
#include <torch/data/example.h>
#include <torch/types.h>

#include <nlohmann/json.hpp>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace attend::datasets {

/// Which items objects are: MNIST digits (classes 0..9, words "0".."9"), Fashion-MNIST
/// items (classes 0..9, words tshirt ... boot) or both (digits 0..9, items 10..19).
enum class ObjectItems { kDigits, kFashion, kBoth };
enum class ObjectBackground { kBlack, kNoise, kClutter };
enum class ObjectSplit { kTrain, kVal, kTest };

const char* to_string(ObjectItems items);
const char* to_string(ObjectBackground background);
const char* to_string(ObjectSplit split);
/// throws c10::Error listing the valid names.
ObjectItems parse_object_items(const std::string& name);
ObjectBackground parse_object_background(const std::string& name);
ObjectSplit parse_object_split(const std::string& name);

/// A (subject, relation, object) triple by class word, e.g. {"3", "left of", "7"};
/// "A right of B" is the same fact as "B left of A", and "below" of "above".
struct RelationTriple {
  std::string subject, relation, object;
  /// "3 left of 7" / "tshirt above boot". throws c10::Error for other text.
  static RelationTriple parse(const std::string& text);
  /// The same fact with left of / above as the relation.
  RelationTriple canonical() const;
  std::string str() const;
  bool operator==(const RelationTriple& o) const {
    return subject == o.subject && relation == o.relation && object == o.object;
  }
};

struct ObjectSceneOptions {
  /// Canvas side S in pixels, 32..1024.
  TORCH_ARG(std::int64_t, canvas) = 64;
  /// Objects per scene, drawn uniformly from [objects_min, objects_max], 1..9.
  TORCH_ARG(std::int64_t, objects_min) = 2;
  TORCH_ARG(std::int64_t, objects_max) = 2;
  TORCH_ARG(ObjectItems, items) = ObjectItems::kDigits;
  /// Side of an object's resized 28x28 frame as a fraction of the canvas, drawn from
  /// [size_min, size_max] per object; 0.1 <= size_min <= size_max <= 1.
  TORCH_ARG(double, size_min) = 0.35;
  TORCH_ARG(double, size_max) = 0.5;
  /// Offset of a box centre from its cell centre, as a fraction of half a cell, 0..1.
  TORCH_ARG(double, jitter) = 0.8;
  /// Largest overlap of two tight boxes, as a fraction of the smaller box's area (0 =
  /// boxes never overlap, 1 = any overlap).
  TORCH_ARG(double, max_overlap) = 0.0;
  /// No two objects of a scene share a class.
  TORCH_ARG(bool, distinct_classes) = true;
  /// RGB with a random hue per object; grey otherwise.
  TORCH_ARG(bool, colour) = false;
  TORCH_ARG(ObjectBackground, background) = ObjectBackground::kBlack;
  /// Strongest background value of the noise and clutter backgrounds, 0..255.
  TORCH_ARG(std::int64_t, background_level) = 96;
  /// Clutter fragments per scene and their side in pixels of the 28x28 frame.
  TORCH_ARG(std::int64_t, fragments) = 8;
  TORCH_ARG(std::int64_t, fragment_size) = 10;
  /// A resized object pixel belongs to the object's mask when its value is above this.
  TORCH_ARG(std::int64_t, mask_threshold) = 48;
  /// Least separation of two centres along the relation's axis, and least margin of
  /// that axis over the other, in pixels (0 = canvas / 10).
  TORCH_ARG(double, relation_margin) = 0.0;
  /// Triples never shown in the training split (compositional split).
  TORCH_ARG(std::vector<RelationTriple>, held_out) = {};
  /// Layout attempts before giving up with an error naming the options to relax.
  TORCH_ARG(std::int64_t, max_attempts) = 1000;

 public:
  /// throws c10::Error naming the first option out of range.
  void validate() const;
  nlohmann::json to_json() const;
  /// throws c10::Error naming a missing or invalid field.
  static ObjectSceneOptions from_json(const nlohmann::json& j);
};

/// Boxes are {x, y, width, height} in canvas pixels.
using Box = std::array<std::int64_t, 4>;

struct PlacedObject {
  std::int64_t label = 0;    ///< class index (0..9, or 0..19 for both)
  std::string word;          ///< class word in captions
  std::int64_t item = 0;     ///< index of the item in its source file
  Box bbox{};                ///< tight box of the object's mask (as pasted, occluded parts included)
  Box cell_bbox{};           ///< the 3x3 grid cell holding the tight box's centre
  std::int64_t cell = 0;     ///< that cell, 0..8 in reading order
  double centre_x = 0, centre_y = 0;  ///< the tight box's centre
  std::array<std::uint8_t, 3> colour{255, 255, 255};  ///< RGB tint (white when grey)
};

struct SceneRelationFact {
  std::int64_t subject = 0, object = 1;  ///< object indices
  std::string predicate;                 ///< "left of", "right of", "above", "below"
};

struct ObjectScene {
  torch::Tensor image;      ///< [S,S] (grey) or [S,S,3] (RGB) uint8
  torch::Tensor instances;  ///< [S,S] uint8: k+1 on object k's visible mask, 0 elsewhere
  torch::Tensor labels;     ///< [S,S] uint8: VOC convention (0, class+1, 255 band)
  std::vector<PlacedObject> objects;  ///< in painting order (the last is on top)
  std::optional<SceneRelationFact> relation;  ///< for two objects
  std::vector<std::vector<std::string>> captions;  ///< tokens of each caption
  /// The caption as a sentence.
  static std::string sentence(const std::vector<std::string>& tokens);
};

/// Class words of `items` ("0".."9", tshirt trouser pullover dress coat sandal shirt
/// sneaker bag boot, or both lists).
std::vector<std::string> object_words(ObjectItems items);

/// Every word a scene caption of `items` can use: the object words, the places and
/// relations, the articles and "and" (a captioner's vocabulary for these scenes).
std::vector<std::string> object_caption_words(ObjectItems items);

/// Where the source files are.
struct ObjectSources {
  std::string digits_dir = "data/mnist";
  std::string fashion_dir = "data/fashion-mnist";
};

class ObjectSceneGenerator {
 public:
  /// Loads the items `options.items()` needs from `sources` (train and t10k files).
  /// throws attend::IoError for unreadable files, c10::Error for invalid options.
  ObjectSceneGenerator(ObjectSceneOptions options, std::uint64_t seed, const ObjectSources& sources = {});
  /// From items in memory: `train` and `test` as in the files (labels 0..9 each; for
  /// kBoth, digits then fashion items).
  ObjectSceneGenerator(ObjectSceneOptions options, std::uint64_t seed, std::vector<Digits> train,
                       std::vector<Digits> test);

  /// Scene `index` of `split` for `epoch`: a pure function of (seed, split, epoch,
  /// index). throws c10::Error when no valid layout is found in max_attempts.
  ObjectScene generate(ObjectSplit split, std::int64_t index, std::int64_t epoch = 0) const;

  /// Items of the split's pool, per source: indices into the source's train or t10k file.
  const std::vector<std::int64_t>& pool(ObjectSplit split, std::size_t source) const;
  std::int64_t classes() const;
  const std::vector<std::string>& words() const { return words_; }
  const ObjectSceneOptions& options() const { return options_; }
  std::uint64_t seed() const { return seed_; }
  std::int64_t channels() const { return options_.colour() ? 3 : 1; }

 private:
  void init(std::vector<Digits> train, std::vector<Digits> test);

  ObjectSceneOptions options_;
  std::uint64_t seed_;
  std::vector<std::string> words_;
  std::vector<Digits> train_, test_;                   ///< per source (1 or 2)
  std::array<std::vector<std::vector<std::int64_t>>, 3> pools_;  ///< [split][source] -> item indices
  std::vector<RelationTriple> held_out_;               ///< canonical
};

/// Batched `torch::data` dataset of object scenes: data float [B,C,S,S] in [0,1]
/// (RGB for colour), target float [B,K]: 1 for each class present (image-level
/// labels). The training split is drawn afresh each epoch (set_epoch); val and test are
/// fixed. Copies share the epoch counter.
class ObjectSceneDataset
    : public torch::data::datasets::BatchDataset<ObjectSceneDataset, torch::data::Example<>> {
 public:
  ObjectSceneDataset(std::shared_ptr<const ObjectSceneGenerator> generator, ObjectSplit split, std::int64_t count);

  torch::data::Example<> get_batch(c10::ArrayRef<size_t> indices) override;
  torch::optional<size_t> size() const override;

  void set_epoch(std::int64_t epoch) { epoch_->store(epoch); }
  const ObjectSceneGenerator& generator() const { return *generator_; }

 private:
  std::shared_ptr<const ObjectSceneGenerator> generator_;
  ObjectSplit split_;
  std::int64_t count_;
  std::shared_ptr<std::atomic<std::int64_t>> epoch_;
};

/// Object scenes as an ImageSource for classifiers: images float [B,C,S,S] in [0,1]
/// (RGB for colour), labels float [B,K] multi-hot (which classes are present). Scene
/// i of the split is generate(split, i, epoch) when `fresh_each_epoch`, else
/// generate(split, i, 0): the test scenes are those `attend data objects` writes with
/// the same generator.
class ObjectLabelSource : public ImageSource {
 public:
  /// requires: count >= 1.
  ObjectLabelSource(std::shared_ptr<const ObjectSceneGenerator> generator, ObjectSplit split, std::int64_t count,
                    bool fresh_each_epoch);
  std::int64_t size() const override { return count_; }
  std::int64_t channels() const override { return generator_->channels(); }
  std::int64_t height() const override { return generator_->options().canvas(); }
  std::int64_t width() const override { return generator_->options().canvas(); }
  LabelledBatch get(const std::vector<std::int64_t>& indices, std::int64_t epoch) const override;
  const ObjectSceneGenerator& generator() const { return *generator_; }
  ObjectSplit split() const { return split_; }
  /// The scene behind item `index` of `epoch`.
  ObjectScene scene(std::int64_t index, std::int64_t epoch = 0) const;

 private:
  std::shared_ptr<const ObjectSceneGenerator> generator_;
  ObjectSplit split_;
  std::int64_t count_;
  bool fresh_;
};

/// What write_object_scenes writes.
struct ObjectSceneCounts {
  std::int64_t train = 1000, val = 100, test = 100;
};

/// Writes a caption data set in Karpathy's layout (see docs/data.md): `images/NNNNNN.png`
/// (RGB or grey), `masks/NNNNNN.png` (the VOC label image), `instances/NNNNNN.png`, and
/// `dataset_objects.json` with images[] {filename, filepath, imgid, split, sentids,
/// sentences[] {tokens, raw, imgid, sentid}, mask, instances, objects[] {label, word,
/// bbox, cell_bbox, mask, instance}, relation}. Every file is written atomically; the
/// PNGs are not synced one by one but once, before the JSON, which is written last and
/// durably: a data set whose JSON exists is complete.
/// Image ids run train, then val, then test; scene i of a split is generate(split, i).
/// `threads` > 1 draws and encodes scenes in parallel (the bytes do not depend on it).
/// An earlier data set in `folder` loses its JSON before any file changes, and its
/// numbered PNGs beyond this set's are removed at the end. When `stop` becomes true
/// the writers stop and DataSetInterrupted is thrown (no JSON is written).
/// returns the JSON written. throws c10::Error when the first scene of a split has no
/// valid layout (before anything is written), attend::IoError naming a file that
/// cannot be written or a write-back failure.
nlohmann::json write_object_scenes(const ObjectSceneGenerator& generator, const ObjectSceneCounts& counts,
                                   const std::string& folder, int threads = 1,
                                   const std::atomic<bool>* stop = nullptr);

/// write_object_scenes was stopped through its flag.
class DataSetInterrupted : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace attend::datasets
