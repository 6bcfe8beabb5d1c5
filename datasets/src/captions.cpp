#include <attend/datasets/captions.h>
#include <attend/io_error.h>
#include <attend/quiet_stderr.h>

#include <c10/util/Exception.h>
#include <opencv2/core/check.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <utility>

namespace attend::datasets {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const char* const kSplits[] = {"train", "val", "test", "restval"};
const char* const kSpecials[] = {"<pad>", "<start>", "<end>", "<unk>"};

bool is_split(const std::string& name) {
  return std::find(std::begin(kSplits), std::end(kSplits), name) != std::end(kSplits);
}

bool is_special(const std::string& word) {
  return std::find(std::begin(kSpecials), std::end(kSpecials), word) != std::end(kSpecials);
}

/// One line: newlines of a foreign message become spaces.
std::string one_line(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  std::replace(text.begin(), text.end(), '\r', ' ');
  return text;
}

std::string size_text(const cv::Size& size) { return std::to_string(size.width) + "x" + std::to_string(size.height); }

/// Walks the parsed JSON of one caption file; every problem becomes
/// IoError(json_path, "<where>: <problem>").
class CaptionParser {
 public:
  CaptionParser(std::string json_path, std::string image_root, CaptionReadOptions options)
      : json_path_(std::move(json_path)), image_root_(std::move(image_root)), options_(options) {}

  CaptionSet parse(const json& root) const {
    if (!root.is_object()) fail("", std::string("expected a JSON object at the top level, found ") + root.type_name());
    CaptionSet set;
    set.json_path = json_path_;
    set.image_root = image_root_;
    if (const json* dataset = member(root, "dataset")) set.dataset = string_value(*dataset, "dataset");
    const json* images = member(root, "images");
    if (images == nullptr) fail("", "missing the 'images' array");
    if (!images->is_array()) fail("images", std::string("expected an array, found ") + images->type_name());

    set.images.reserve(images->size());
    std::unordered_map<std::string, std::size_t> seen;  // filepath/filename -> first index
    for (std::size_t i = 0; i < images->size(); ++i) {
      const std::string at = "images[" + std::to_string(i) + "]";
      CaptionImage image = parse_image((*images)[i], at, static_cast<std::int64_t>(i));
      const std::string key = image.filepath.empty() ? image.filename : image.filepath + "/" + image.filename;
      const auto [it, inserted] = seen.emplace(key, i);
      if (!inserted) {
        fail(at + ".filename",
             "duplicate file name '" + key + "' (also images[" + std::to_string(it->second) + "])");
      }
      if (options_.check_files()) check_files(image, at, set);
      set.images.push_back(std::move(image));
    }
    return set;
  }

 private:
  [[noreturn]] void fail(const std::string& where, const std::string& problem) const {
    throw IoError(json_path_, where.empty() ? problem : where + ": " + problem);
  }

  static const json* member(const json& object, const char* key) {
    const auto it = object.find(key);
    return it == object.end() ? nullptr : &*it;
  }

  std::string string_value(const json& value, const std::string& where) const {
    if (!value.is_string()) fail(where, std::string("expected a string, found ") + value.type_name());
    return value.get<std::string>();
  }

  std::int64_t int_value(const json& value, const std::string& where) const {
    if (value.is_number_unsigned()) {
      const auto u = value.get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        fail(where, "integer out of range: " + std::to_string(u));
      }
      return static_cast<std::int64_t>(u);
    }
    if (!value.is_number_integer()) {
      fail(where, std::string("expected an integer, found ") + (value.is_number_float() ? "a fraction " + value.dump()
                                                                                           : value.type_name()));
    }
    return value.get<std::int64_t>();
  }

  /// A non-empty relative path field, or "" when absent.
  std::string path_value(const json& object, const char* key, const std::string& at) const {
    const json* value = member(object, key);
    if (value == nullptr) return "";
    const std::string where = at + "." + key;
    std::string path = string_value(*value, where);
    if (path.empty()) fail(where, "an empty path");
    return path;
  }

  std::array<std::int64_t, 4> box_value(const json& value, const std::string& where) const {
    if (!value.is_array() || value.size() != 4) {
      fail(where, std::string("expected an array [x, y, width, height], found ") +
                      (value.is_array() ? "an array of " + std::to_string(value.size()) : value.type_name()));
    }
    std::array<std::int64_t, 4> box{};
    for (std::size_t k = 0; k < 4; ++k) box[k] = int_value(value[k], where + "[" + std::to_string(k) + "]");
    if (box[0] < 0 || box[1] < 0 || box[2] <= 0 || box[3] <= 0) {
      fail(where, "expected x, y >= 0 and width, height > 0, found " + value.dump());
    }
    return box;
  }

  CaptionImage parse_image(const json& item, const std::string& at, std::int64_t index) const {
    if (!item.is_object()) fail(at, std::string("expected an object, found ") + item.type_name());
    CaptionImage image;

    const json* filename = member(item, "filename");
    if (filename == nullptr) fail(at, "missing 'filename'");
    image.filename = string_value(*filename, at + ".filename");
    if (image.filename.empty()) fail(at + ".filename", "an empty file name");
    if (const json* filepath = member(item, "filepath")) image.filepath = string_value(*filepath, at + ".filepath");

    const json* split = member(item, "split");
    if (split == nullptr) fail(at, "missing 'split'");
    image.split = string_value(*split, at + ".split");
    if (!is_split(image.split)) {
      fail(at + ".split", "unknown split '" + image.split + "' (expected train, val, test or restval)");
    }

    const json* imgid = member(item, "imgid");
    image.imgid = imgid ? int_value(*imgid, at + ".imgid") : index;

    const json* sentences = member(item, "sentences");
    if (sentences == nullptr) fail(at, "missing the 'sentences' array");
    if (!sentences->is_array()) fail(at + ".sentences", std::string("expected an array, found ") + sentences->type_name());
    image.sentences.reserve(sentences->size());
    for (std::size_t s = 0; s < sentences->size(); ++s) {
      image.sentences.push_back(
          parse_sentence((*sentences)[s], at + ".sentences[" + std::to_string(s) + "]", image.imgid));
    }

    image.mask = path_value(item, "mask", at);
    image.instances = path_value(item, "instances", at);

    if (const json* objects = member(item, "objects")) {
      if (!objects->is_array()) fail(at + ".objects", std::string("expected an array, found ") + objects->type_name());
      for (std::size_t k = 0; k < objects->size(); ++k) {
        image.objects.push_back(
            parse_object((*objects)[k], at + ".objects[" + std::to_string(k) + "]", image.instances));
      }
    }
    if (const json* relation = member(item, "relation")) {
      if (!relation->is_null()) image.relation = parse_relation(*relation, at + ".relation", image.objects.size());
    }

    fs::path path(image_root_);
    if (!image.filepath.empty()) path /= image.filepath;
    path /= image.filename;
    image.path = path.string();
    return image;
  }

  CaptionSentence parse_sentence(const json& item, const std::string& at, std::int64_t imgid) const {
    if (!item.is_object()) fail(at, std::string("expected an object, found ") + item.type_name());
    CaptionSentence sentence;
    const json* tokens = member(item, "tokens");
    if (tokens == nullptr || (tokens->is_array() && tokens->empty())) fail(at, "a sentence without tokens");
    if (!tokens->is_array()) fail(at + ".tokens", std::string("expected an array, found ") + tokens->type_name());
    sentence.tokens.reserve(tokens->size());
    for (std::size_t t = 0; t < tokens->size(); ++t) {
      const std::string where = at + ".tokens[" + std::to_string(t) + "]";
      sentence.tokens.push_back(string_value((*tokens)[t], where));
      if (sentence.tokens.back().empty()) fail(where, "an empty token");
    }
    if (const json* raw = member(item, "raw")) sentence.raw = string_value(*raw, at + ".raw");
    if (const json* sentid = member(item, "sentid")) sentence.sentid = int_value(*sentid, at + ".sentid");
    if (const json* own = member(item, "imgid")) {
      const auto value = int_value(*own, at + ".imgid");
      if (value != imgid) {
        fail(at + ".imgid", std::to_string(value) + " but the image's imgid is " + std::to_string(imgid));
      }
    }
    return sentence;
  }

  SceneObject parse_object(const json& item, const std::string& at, const std::string& image_instances) const {
    if (!item.is_object()) fail(at, std::string("expected an object, found ") + item.type_name());
    SceneObject object;
    const json* label = member(item, "label");
    if (label == nullptr) fail(at, "missing 'label'");
    object.label = int_value(*label, at + ".label");
    if (object.label < 0) fail(at + ".label", "expected a class index >= 0, found " + std::to_string(object.label));
    if (const json* word = member(item, "word")) object.word = string_value(*word, at + ".word");
    const json* bbox = member(item, "bbox");
    if (bbox == nullptr) fail(at, "missing 'bbox'");
    object.bbox = box_value(*bbox, at + ".bbox");
    if (const json* cell = member(item, "cell_bbox")) object.cell_bbox = box_value(*cell, at + ".cell_bbox");
    object.mask = path_value(item, "mask", at);
    if (const json* instance = member(item, "instance")) {
      object.instance = int_value(*instance, at + ".instance");
      if (object.instance < 1 || object.instance > 255) {
        fail(at + ".instance", "expected a pixel value 1..255, found " + std::to_string(object.instance));
      }
      if (object.mask.empty() && image_instances.empty()) {
        fail(at, "an instance without an instance image ('mask' here or 'instances' on the image)");
      }
    }
    return object;
  }

  SceneRelation parse_relation(const json& item, const std::string& at, std::size_t object_count) const {
    if (!item.is_object()) fail(at, std::string("expected an object, found ") + item.type_name());
    SceneRelation relation;
    const auto index = [&](const char* key) {
      const json* value = member(item, key);
      if (value == nullptr) fail(at, std::string("missing '") + key + "'");
      const auto k = int_value(*value, at + "." + key);
      if (k < 0 || k >= static_cast<std::int64_t>(object_count)) {
        fail(at + "." + key, "object index " + std::to_string(k) + " outside 0.." +
                                 std::to_string(static_cast<std::int64_t>(object_count) - 1) + " (" +
                                 std::to_string(object_count) + " objects)");
      }
      return k;
    };
    relation.subject = index("subject");
    relation.object = index("object");
    if (relation.subject == relation.object) fail(at, "subject and object are the same object");
    const json* predicate = member(item, "predicate");
    if (predicate == nullptr) fail(at, "missing 'predicate'");
    relation.predicate = string_value(*predicate, at + ".predicate");
    if (relation.predicate.empty()) fail(at + ".predicate", "an empty predicate");
    return relation;
  }

  void check_files(const CaptionImage& image, const std::string& at, const CaptionSet& set) const {
    std::error_code ec;
    if (!fs::is_regular_file(image.path, ec)) fail(at, "image file does not exist: " + image.path);
    std::set<std::string> checked;
    const auto check = [&](const std::string& relative, const std::string& where) {
      if (relative.empty() || !checked.insert(relative).second) return;
      const auto path = set.resolve(relative);
      if (!fs::is_regular_file(path, ec)) fail(where, "file does not exist: " + path);
    };
    check(image.mask, at + ".mask");
    check(image.instances, at + ".instances");
    for (std::size_t k = 0; k < image.objects.size(); ++k) {
      check(image.objects[k].mask, at + ".objects[" + std::to_string(k) + "].mask");
    }
  }

  std::string json_path_;
  std::string image_root_;
  CaptionReadOptions options_;
};

/// The bytes of `path` decoded by OpenCV. throws IoError naming `path`.
cv::Mat decode_file(const std::string& path, int flags) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    throw IoError(path, fs::exists(path, ec) ? "cannot open the file" : "file does not exist");
  }
  const std::vector<unsigned char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) throw IoError(path, "read failed");
  if (bytes.empty()) throw IoError(path, "empty file, not an image");
  cv::Mat image;
  try {
    detail::QuietStderr quiet;  // libpng's and libjpeg's own messages (see quiet_stderr.h)
    image = cv::imdecode(bytes, flags);
  } catch (const cv::Exception& e) {
    throw IoError(path, "not a decodable image: " + one_line(e.err));
  }
  if (image.empty()) throw IoError(path, "not a decodable image");
  return image;
}

/// A single-channel 8-bit image of the same size as `image` (decoded when
/// `image_size` is empty). `what` names it in messages ("mask", "instance image").
cv::Mat read_grey_like_image(const std::string& path, const CaptionImage& image, cv::Size image_size,
                             const char* what) {
  cv::Mat grey = decode_file(path, cv::IMREAD_UNCHANGED);
  if (grey.type() != CV_8UC1) {
    throw IoError(path, std::string("expected the ") + what + " to be an 8-bit single-channel image, found " +
                            cv::typeToString(grey.type()));
  }
  if (image_size.empty()) image_size = read_caption_image(image, cv::IMREAD_COLOR).size();
  if (grey.size() != image_size) {
    throw IoError(path, std::string(what) + " " + size_text(grey.size()) + " but image " + size_text(image_size) +
                            " (" + image.path + ")");
  }
  return grey;
}

}  // namespace

// ---------------------------------------------------------------------------------
// CaptionSet

std::vector<const CaptionImage*> CaptionSet::split(const std::string& name, bool restval_as_train) const {
  TORCH_CHECK(is_split(name), "CaptionSet::split: expected \"train\", \"val\", \"test\" or \"restval\", got \"", name,
              "\"");
  std::vector<const CaptionImage*> out;
  const bool with_restval = restval_as_train && name == "train";
  for (const auto& image : images) {
    if (image.split == name || (with_restval && image.split == "restval")) out.push_back(&image);
  }
  return out;
}

std::string CaptionSet::resolve(const std::string& relative) const {
  return (fs::path(image_root) / relative).string();
}

CaptionSet read_caption_set(const std::string& json_path, const std::string& image_root, CaptionReadOptions options) {
  std::ifstream in(json_path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    throw IoError(json_path, fs::exists(json_path, ec) ? "cannot open the file" : "file does not exist");
  }
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) throw IoError(json_path, "read failed");

  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& e) {
    std::string message = e.what();
    // "[json.exception.parse_error.101] parse error at line 3, column 5: ..." -> drop the tag.
    const auto tag_end = message.find("] ");
    if (message.rfind("[json.exception.", 0) == 0 && tag_end != std::string::npos) message.erase(0, tag_end + 2);
    throw IoError(json_path, "malformed JSON: " + one_line(message));
  }

  const std::string root_folder = image_root.empty() ? fs::path(json_path).parent_path().string() : image_root;
  try {
    return CaptionParser(json_path, root_folder, options).parse(root);
  } catch (const json::exception& e) {  // a check missed above: still one IoError, never a raw nlohmann error
    throw IoError(json_path, "unexpected content: " + one_line(e.what()));
  }
}

cv::Mat read_caption_image(const CaptionImage& image, int flags) {
  TORCH_CHECK(!image.path.empty(), "read_caption_image: the image \"", image.filename,
              "\" has no resolved path (read it with read_caption_set)");
  return decode_file(image.path, flags);
}

cv::Mat read_label_mask(const CaptionImage& image, const CaptionSet& set, cv::Size image_size) {
  TORCH_CHECK(!image.mask.empty(), "read_label_mask: the image \"", image.filename, "\" has no \"mask\"");
  return read_grey_like_image(set.resolve(image.mask), image, image_size, "mask");
}

cv::Mat read_object_mask(const SceneObject& object, const CaptionImage& image, const CaptionSet& set,
                         cv::Size image_size) {
  const std::string& relative = object.mask.empty() ? image.instances : object.mask;
  TORCH_CHECK(!relative.empty(), "read_object_mask: neither the object nor the image \"", image.filename,
              "\" names an instance image");
  TORCH_CHECK(object.instance >= 1 && object.instance <= 255, "read_object_mask: expected an instance value 1..255, got ",
              object.instance);
  const auto path = set.resolve(relative);
  const cv::Mat instances = read_grey_like_image(path, image, image_size, "instance image");
  cv::Mat mask;
  cv::compare(instances, cv::Scalar(static_cast<double>(object.instance)), mask, cv::CMP_EQ);
  if (cv::countNonZero(mask) == 0) throw IoError(path, "no pixel of instance " + std::to_string(object.instance));
  return mask;
}

// ---------------------------------------------------------------------------------
// Vocabulary

Vocabulary::Vocabulary() : Vocabulary(std::vector<std::string>(std::begin(kSpecials), std::end(kSpecials))) {}

Vocabulary::Vocabulary(std::vector<std::string> words) : words_(std::move(words)) {
  ids_.reserve(words_.size());
  for (std::size_t i = 0; i < words_.size(); ++i) ids_.emplace(words_[i], static_cast<std::int64_t>(i));
}

Vocabulary Vocabulary::build(const std::vector<std::vector<std::string>>& token_lists, std::int64_t min_count) {
  TORCH_CHECK(min_count >= 1, "Vocabulary::build: expected min_count >= 1, got ", min_count);
  std::unordered_map<std::string, std::int64_t> counts;
  for (std::size_t i = 0; i < token_lists.size(); ++i) {
    for (const auto& token : token_lists[i]) {
      TORCH_CHECK(!token.empty(), "Vocabulary::build: an empty token in token list ", i);
      if (!is_special(token)) ++counts[token];
    }
  }
  std::vector<std::pair<std::string, std::int64_t>> kept;
  for (auto& entry : counts) {
    if (entry.second >= min_count) kept.emplace_back(entry.first, entry.second);
  }
  std::sort(kept.begin(), kept.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  std::vector<std::string> words(std::begin(kSpecials), std::end(kSpecials));
  words.reserve(words.size() + kept.size());
  for (auto& entry : kept) words.push_back(std::move(entry.first));
  return Vocabulary(std::move(words));
}

std::int64_t Vocabulary::id(const std::string& word) const {
  const auto it = ids_.find(word);
  return it == ids_.end() ? kUnk : it->second;
}

const std::string& Vocabulary::word(std::int64_t id) const {
  TORCH_CHECK(id >= 0 && id < size(), "Vocabulary::word: expected an id in 0..", size() - 1, ", got ", id);
  return words_[static_cast<std::size_t>(id)];
}

std::vector<std::int64_t> Vocabulary::encode(const std::vector<std::string>& tokens) const {
  std::vector<std::int64_t> ids;
  ids.reserve(tokens.size() + 2);
  ids.push_back(kStart);
  for (const auto& token : tokens) ids.push_back(id(token));
  ids.push_back(kEnd);
  return ids;
}

std::vector<std::string> Vocabulary::decode(const std::vector<std::int64_t>& ids) const {
  std::vector<std::string> tokens;
  for (const auto i : ids) {
    TORCH_CHECK(i >= 0 && i < size(), "Vocabulary::decode: expected ids in 0..", size() - 1, ", got ", i);
    if (i == kEnd) break;
    if (i == kStart || i == kPad) continue;
    tokens.push_back(words_[static_cast<std::size_t>(i)]);
  }
  return tokens;
}

nlohmann::json Vocabulary::to_json() const { return json{{"words", words_}}; }

Vocabulary Vocabulary::from_json(const nlohmann::json& j) {
  TORCH_CHECK(j.is_object() && j.contains("words"), "vocabulary: expected an object with a \"words\" array, got ",
              j.type_name());
  const json& list = j.at("words");
  TORCH_CHECK(list.is_array(), "vocabulary: \"words\" must be an array, got ", list.type_name());
  std::vector<std::string> words;
  words.reserve(list.size());
  std::unordered_map<std::string, std::size_t> seen;
  for (std::size_t i = 0; i < list.size(); ++i) {
    TORCH_CHECK(list[i].is_string(), "vocabulary: words[", i, "] must be a string, got ", list[i].type_name());
    auto word = list[i].get<std::string>();
    TORCH_CHECK(!word.empty(), "vocabulary: words[", i, "] is empty");
    if (i < std::size(kSpecials)) {
      TORCH_CHECK(word == kSpecials[i], "vocabulary: words[", i, "] must be \"", kSpecials[i], "\", got \"", word,
                  "\"");
    }
    const auto [it, inserted] = seen.emplace(word, i);
    TORCH_CHECK(inserted, "vocabulary: words[", i, "] \"", word, "\" repeats words[", it->second, "]");
    words.push_back(std::move(word));
  }
  TORCH_CHECK(words.size() >= std::size(kSpecials), "vocabulary: expected at least the ", std::size(kSpecials),
              " special words, got ", words.size(), " words");
  return Vocabulary(std::move(words));
}

// ---------------------------------------------------------------------------------
// Batches

CaptionBatch make_caption_batch(const Vocabulary& vocab, const std::vector<std::vector<std::string>>& captions,
                                std::int64_t max_length) {
  TORCH_CHECK(max_length == 0 || max_length >= 2,
              "make_caption_batch: expected max_length 0 (no cap) or >= 2 (<start> and <end>), got ", max_length);
  std::vector<std::vector<std::int64_t>> rows;
  rows.reserve(captions.size());
  std::int64_t longest = 0;
  for (const auto& caption : captions) {
    auto ids = vocab.encode(caption);
    if (max_length > 0 && static_cast<std::int64_t>(ids.size()) > max_length) {
      ids.resize(static_cast<std::size_t>(max_length));
      ids.back() = Vocabulary::kEnd;
    }
    longest = std::max(longest, static_cast<std::int64_t>(ids.size()));
    rows.push_back(std::move(ids));
  }
  const auto batch = static_cast<std::int64_t>(rows.size());
  CaptionBatch out;
  out.tokens = torch::full({batch, longest}, Vocabulary::kPad, torch::kInt64);
  out.lengths = torch::empty({batch}, torch::kInt64);
  auto tokens = out.tokens.accessor<std::int64_t, 2>();
  auto lengths = out.lengths.accessor<std::int64_t, 1>();
  for (std::int64_t b = 0; b < batch; ++b) {
    const auto& ids = rows[static_cast<std::size_t>(b)];
    for (std::size_t t = 0; t < ids.size(); ++t) tokens[b][static_cast<std::int64_t>(t)] = ids[t];
    lengths[b] = static_cast<std::int64_t>(ids.size());
  }
  return out;
}

}  // namespace attend::datasets
