#pragma once
/// Caption data sets in Karpathy's layout (`dataset_coco.json`, `dataset_flickr8k.json`,
/// `dataset_flickr30k.json`), read unchanged, plus the vocabulary and padded token
/// batches a captioner trains on.
///
/// Layout:
///   {"dataset": "coco", "images": [
///     {"filepath": "val2014",                       (optional; absent in Flickr)
///      "filename": "COCO_val2014_000000391895.jpg",
///      "imgid": 0,                                   (optional; default: position)
///      "split": "train" | "val" | "test" | "restval",
///      "sentences": [{"tokens": ["a", "man", ...], "raw": "A man ...",
///                     "imgid": 0, "sentid": 770337}, ...],
///      ...}]}
/// Fields not named here ("sentids", "cocoid", ...) are ignored. An image's file is
/// <image_root>/<filepath if present>/<filename>.
///
/// attend's own scene files add, per image (all optional, all paths relative to
/// image_root like the images):
///   "mask": "masks/000012.png"           VOC-style labels: uint8 grey, 0 background,
///                                         1..K class index + 1, 255 ignore band
///   "instances": "instances/000012.png"  uint8 grey, pixel k (1..n) marks object k-1
///   "objects": [{"label": 3, "word": "3", "bbox": [x, y, w, h],
///                "cell_bbox": [x, y, w, h], "mask": "instances/000012.png",
///                "instance": 1}, ...]     bbox tight; cell_bbox the 3x3 grid cell
///                                         holding the object's centre
///   "relation": {"subject": 0, "predicate": "left of", "object": 1}
///                                         indices into "objects"

#include <torch/arg.h>
#include <torch/types.h>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace attend::datasets {

/// One reference caption of an image.
struct CaptionSentence {
  std::vector<std::string> tokens;  ///< never empty; no empty token
  std::string raw;                  ///< the untokenised caption ("" when the file has none)
  std::int64_t sentid = -1;         ///< -1 when the file has none
};

/// One object of a generated scene.
struct SceneObject {
  std::int64_t label = 0;                   ///< class index, >= 0
  std::string word;                         ///< the word captions use for it
  std::array<std::int64_t, 4> bbox{};       ///< tight box x, y, width, height (pixels)
  std::array<std::int64_t, 4> cell_bbox{};  ///< 3x3 grid cell holding the centre, x, y, w, h
  std::string mask;                         ///< instance image (relative); "" = the image's "instances"
  std::int64_t instance = 0;                ///< pixel value of this object in that image, 1..255
};

/// "subject predicate object", e.g. objects[0] "left of" objects[1].
struct SceneRelation {
  std::int64_t subject = 0;  ///< index into CaptionImage::objects
  std::int64_t object = 0;   ///< index into CaptionImage::objects, != subject
  std::string predicate;     ///< non-empty
};

/// One image entry.
struct CaptionImage {
  std::string filename;                    ///< as in the file, non-empty
  std::string filepath;                    ///< "" when absent
  std::string split;                       ///< "train", "val", "test" or "restval"
  std::int64_t imgid = 0;                  ///< the file's imgid (default: position in "images")
  std::vector<CaptionSentence> sentences;  ///< may be empty
  std::string mask;                        ///< label image, relative to image_root ("" = none)
  std::string instances;                   ///< instance image, relative to image_root ("" = none)
  std::vector<SceneObject> objects;
  std::optional<SceneRelation> relation;
  std::string path;                        ///< resolved: <image_root>/<filepath>/<filename>
};

/// A whole caption file.
struct CaptionSet {
  std::string dataset;    ///< the file's "dataset" ("" when absent)
  std::string json_path;  ///< the file read
  std::string image_root; ///< folder the image, mask and instance paths are relative to
  std::vector<CaptionImage> images;  ///< in file order

  /// The images of split `name` ("train", "val", "test" or "restval"), in file
  /// order. With restval_as_train, "train" also returns the "restval" images (the
  /// Karpathy convention: COCO trains on train + restval).
  /// ensures: pointers into `images`, valid while this set lives and `images` is not
  /// resized. throws c10::Error for another name.
  std::vector<const CaptionImage*> split(const std::string& name, bool restval_as_train = true) const;

  /// `relative` (a mask or instance path of the file) under image_root.
  std::string resolve(const std::string& relative) const;
};

struct CaptionReadOptions {
  /// Check that every image file, and every mask and instance file named, exists
  /// (one stat per file; nothing is decoded).
  TORCH_ARG(bool, check_files) = true;
};

/// Reads a caption file in Karpathy's layout (with attend's optional scene fields).
/// `image_root` "" means the folder holding the JSON file.
/// throws attend::IoError(json_path, "<where>: <problem>") for an unreadable file,
/// malformed JSON (with the parser's line and column), a missing or mistyped field
/// ("images[0].split: expected a string"), an empty filename, an unknown split name,
/// a sentence without tokens, an empty token, a sentence imgid differing from its
/// image's, a duplicate file (same filepath/filename), a bad box, instance or
/// relation, and (with check_files) a file that does not exist
/// ("images[2]: image file does not exist: <path>").
CaptionSet read_caption_set(const std::string& json_path, const std::string& image_root = "",
                            CaptionReadOptions options = {});

/// Decodes the image's file (BGR uint8 HWC for cv::IMREAD_COLOR, CV_8UC1 for
/// cv::IMREAD_GRAYSCALE; `flags` as cv::imread).
/// throws attend::IoError(image.path, ...) when the file is missing, unreadable, empty
/// or not a decodable image.
cv::Mat read_caption_image(const CaptionImage& image, int flags = cv::IMREAD_COLOR);

/// The image's label mask: CV_8UC1, 0 background, 1..K class + 1, 255 ignore.
/// `image_size` is the image's size when the caller has it; empty means decode the
/// image to find it.
/// throws c10::Error when the image has no mask; attend::IoError(mask path, ...) when
/// the mask is missing, undecodable, not single-channel 8-bit, or of another size than
/// the image ("mask 32x32 but image 64x64").
cv::Mat read_label_mask(const CaptionImage& image, const CaptionSet& set, cv::Size image_size = {});

/// The pixels of one object: CV_8UC1, 255 where its instance image equals
/// `object.instance`, 0 elsewhere. Reads object.mask, or the image's "instances"
/// when that is empty. `image_size` as for read_label_mask.
/// throws c10::Error when neither names a file; attend::IoError(instance path, ...)
/// when the file is missing, undecodable, not single-channel 8-bit, of another size
/// than the image, or holds no pixel of the instance.
cv::Mat read_object_mask(const SceneObject& object, const CaptionImage& image, const CaptionSet& set,
                         cv::Size image_size = {});

/// Word <-> id. Ids 0..3 are <pad>, <start>, <end>, <unk>; then the words by
/// descending count, ties in byte-wise alphabetical order, so the same captions
/// always give the same ids.
class Vocabulary {
 public:
  static constexpr std::int64_t kPad = 0, kStart = 1, kEnd = 2, kUnk = 3;

  /// Only the four special words.
  Vocabulary();

  /// Counts every token of `token_lists` and keeps the words seen at least
  /// `min_count` times. Tokens that spell a special word ("<unk>", ...) are not
  /// counted. throws c10::Error when min_count < 1 or a token is empty.
  static Vocabulary build(const std::vector<std::vector<std::string>>& token_lists, std::int64_t min_count = 1);

  /// Number of ids, specials included.
  std::int64_t size() const { return static_cast<std::int64_t>(words_.size()); }
  /// The id of `word`; kUnk for a word not in the vocabulary.
  std::int64_t id(const std::string& word) const;
  bool contains(const std::string& word) const { return ids_.count(word) > 0; }
  /// throws c10::Error for an id outside 0..size-1.
  const std::string& word(std::int64_t id) const;
  /// All words, indexed by id.
  const std::vector<std::string>& words() const { return words_; }

  /// <start> id(t0) ... id(tn-1) <end>.
  std::vector<std::int64_t> encode(const std::vector<std::string>& tokens) const;
  /// The words of `ids`, skipping <start> and <pad>, stopping at the first <end>
  /// (not included); <unk> decodes to "<unk>". throws c10::Error for an id out of range.
  std::vector<std::string> decode(const std::vector<std::int64_t>& ids) const;

  /// {"words": ["<pad>", "<start>", "<end>", "<unk>", ...]} (index = id).
  nlohmann::json to_json() const;
  /// The inverse of to_json. throws c10::Error ("vocabulary: ...") when "words" is
  /// missing or not an array of strings, does not start with the four special words
  /// in order, or holds an empty or duplicate word.
  static Vocabulary from_json(const nlohmann::json& j);

  bool operator==(const Vocabulary& other) const { return words_ == other.words_; }
  bool operator!=(const Vocabulary& other) const { return !(*this == other); }

 private:
  explicit Vocabulary(std::vector<std::string> words);
  std::vector<std::string> words_;
  std::unordered_map<std::string, std::int64_t> ids_;
};

/// Padded captions for teacher forcing.
struct CaptionBatch {
  torch::Tensor tokens;   ///< [B,T] int64: <start> w1..wn <end>, then <pad>; T = max length
  torch::Tensor lengths;  ///< [B] int64: tokens per row including <start> and <end>
};

/// Encodes `captions` with `vocab` and pads them to the longest.
/// `max_length` > 0 caps T: a longer caption keeps <start>, its first max_length-2
/// words and <end>. 0 = no cap. An empty `captions` gives tokens [0,0], lengths [0].
/// throws c10::Error when max_length is negative or 1 (2 is <start> <end> alone).
CaptionBatch make_caption_batch(const Vocabulary& vocab, const std::vector<std::vector<std::string>>& captions,
                                std::int64_t max_length = 0);

}  // namespace attend::datasets
