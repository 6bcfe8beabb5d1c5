#include "attend/datasets/object_scenes.h"

#include <attend/atomic_file.h>
#include <attend/datasets/rng.h>
#include <attend/io_error.h>

#include <opencv2/imgcodecs.hpp>
#include <torch/torch.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <thread>

namespace attend::datasets {
namespace {

// Stream of stream_key(seed, kObjectStream + split, ...): scene layouts.
constexpr std::uint64_t kObjectStream = 0x0b1ec700;

const char* const kDigitWords[] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
const char* const kFashionWords[] = {"tshirt", "trouser", "pullover", "dress", "coat",
                                     "sandal", "shirt",   "sneaker",  "bag",   "boot"};
const char* const kPlaces[] = {"top left", "top",         "top right", "left",        "center",
                               "right",    "bottom left", "bottom",    "bottom right"};

std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::string article(const std::string& word) { return word == "8" ? "an" : "a"; }

/// Bilinear resize of a square uint8 image in 16.16 fixed point (pixel centres aligned,
/// as cv::INTER_LINEAR), so that every machine gets the same bytes.
std::vector<std::uint8_t> resize_square(const std::uint8_t* src, std::int64_t n, std::int64_t m) {
  std::vector<std::uint8_t> out(static_cast<size_t>(m * m));
  std::vector<std::int64_t> i0(static_cast<size_t>(m)), i1(static_cast<size_t>(m)), w1(static_cast<size_t>(m));
  for (std::int64_t o = 0; o < m; ++o) {
    // source coordinate (o + 0.5) * n / m - 0.5 in 16.16
    std::int64_t s = ((2 * o + 1) * n * 65536) / (2 * m) - 32768;
    if (s < 0) s = 0;
    std::int64_t a = s >> 16;
    std::int64_t f = s & 0xffff;
    if (a >= n - 1) {
      a = n - 1;
      f = 0;
    }
    i0[static_cast<size_t>(o)] = a;
    i1[static_cast<size_t>(o)] = std::min(a + 1, n - 1);
    w1[static_cast<size_t>(o)] = f;
  }
  for (std::int64_t y = 0; y < m; ++y) {
    const auto* r0 = src + i0[static_cast<size_t>(y)] * n;
    const auto* r1 = src + i1[static_cast<size_t>(y)] * n;
    const std::int64_t fy = w1[static_cast<size_t>(y)];
    for (std::int64_t x = 0; x < m; ++x) {
      const auto x0 = i0[static_cast<size_t>(x)], x1 = i1[static_cast<size_t>(x)];
      const std::int64_t fx = w1[static_cast<size_t>(x)];
      const std::int64_t top = r0[x0] * (65536 - fx) + r0[x1] * fx;
      const std::int64_t bottom = r1[x0] * (65536 - fx) + r1[x1] * fx;
      const std::int64_t v = (top * (65536 - fy) + bottom * fy + (std::int64_t{1} << 31)) >> 32;
      out[static_cast<size_t>(y * m + x)] = static_cast<std::uint8_t>(std::clamp<std::int64_t>(v, 0, 255));
    }
  }
  return out;
}

/// Fully saturated colour of an integer hue 0..359, in integer arithmetic.
std::array<std::uint8_t, 3> hue_rgb(std::int64_t hue) {
  const std::int64_t sector = hue / 60;
  const auto f = static_cast<std::uint8_t>((hue % 60) * 255 / 59);
  const std::uint8_t q = 255 - f;
  switch (sector) {
    case 0: return {255, f, 0};
    case 1: return {q, 255, 0};
    case 2: return {0, 255, f};
    case 3: return {0, q, 255};
    case 4: return {f, 0, 255};
    default: return {255, 0, q};
  }
}

std::int64_t cell_edge(std::int64_t i, std::int64_t s) { return i * s / 3; }

std::int64_t cell_of(double centre, std::int64_t s) {
  for (std::int64_t i = 2; i >= 0; --i) {
    if (centre >= static_cast<double>(cell_edge(i, s))) return i;
  }
  return 0;
}

double overlap_fraction(const Box& a, const Box& b) {
  const auto w = std::min(a[0] + a[2], b[0] + b[2]) - std::max(a[0], b[0]);
  const auto h = std::min(a[1] + a[3], b[1] + b[3]) - std::max(a[1], b[1]);
  if (w <= 0 || h <= 0) return 0.0;
  return static_cast<double>(w * h) / static_cast<double>(std::min(a[2] * a[3], b[2] * b[3]));
}

/// One object being laid out: its resized frame and the mask's extent in it.
struct Sprite {
  std::int64_t source = 0, item = 0, label = 0, side = 0;
  std::vector<std::uint8_t> pixels;  // side x side
  Box tight{};                       // in frame coordinates
  std::int64_t frame_x = 0, frame_y = 0;
};

}  // namespace

const char* to_string(ObjectItems items) {
  switch (items) {
    case ObjectItems::kDigits: return "digits";
    case ObjectItems::kFashion: return "fashion";
    case ObjectItems::kBoth: return "both";
  }
  return "?";
}
const char* to_string(ObjectBackground background) {
  switch (background) {
    case ObjectBackground::kBlack: return "black";
    case ObjectBackground::kNoise: return "noise";
    case ObjectBackground::kClutter: return "clutter";
  }
  return "?";
}
const char* to_string(ObjectSplit split) {
  switch (split) {
    case ObjectSplit::kTrain: return "train";
    case ObjectSplit::kVal: return "val";
    case ObjectSplit::kTest: return "test";
  }
  return "?";
}
ObjectItems parse_object_items(const std::string& name) {
  for (auto v : {ObjectItems::kDigits, ObjectItems::kFashion, ObjectItems::kBoth}) {
    if (name == to_string(v)) return v;
  }
  TORCH_CHECK(false, "object items must be digits, fashion or both, got '", name, "'");
}
ObjectBackground parse_object_background(const std::string& name) {
  for (auto v : {ObjectBackground::kBlack, ObjectBackground::kNoise, ObjectBackground::kClutter}) {
    if (name == to_string(v)) return v;
  }
  TORCH_CHECK(false, "background must be black, noise or clutter, got '", name, "'");
}
ObjectSplit parse_object_split(const std::string& name) {
  for (auto v : {ObjectSplit::kTrain, ObjectSplit::kVal, ObjectSplit::kTest}) {
    if (name == to_string(v)) return v;
  }
  TORCH_CHECK(false, "split must be train, val or test, got '", name, "'");
}

std::vector<std::string> object_words(ObjectItems items) {
  std::vector<std::string> words;
  if (items != ObjectItems::kFashion) words.insert(words.end(), std::begin(kDigitWords), std::end(kDigitWords));
  if (items != ObjectItems::kDigits) words.insert(words.end(), std::begin(kFashionWords), std::end(kFashionWords));
  return words;
}

RelationTriple RelationTriple::parse(const std::string& text) {
  const auto words = split_words(text);
  RelationTriple t;
  if (words.size() == 4 && words[2] == "of" && (words[1] == "left" || words[1] == "right")) {
    t = {words[0], words[1] + " of", words[3]};
  } else if (words.size() == 3 && (words[1] == "above" || words[1] == "below")) {
    t = {words[0], words[1], words[2]};
  } else {
    TORCH_CHECK(false, "a held-out triple reads 'A left of B', 'A right of B', 'A above B' or 'A below B', got '",
                text, "'");
  }
  return t;
}

RelationTriple RelationTriple::canonical() const {
  if (relation == "right of") return {object, "left of", subject};
  if (relation == "below") return {object, "above", subject};
  return *this;
}

std::string RelationTriple::str() const { return subject + " " + relation + " " + object; }

void ObjectSceneOptions::validate() const {
  TORCH_CHECK(canvas_ >= 32 && canvas_ <= 1024, "object scenes: canvas must be in 32..1024, got ", canvas_);
  TORCH_CHECK(objects_min_ >= 1 && objects_min_ <= objects_max_ && objects_max_ <= 9,
              "object scenes: objects must be a range within 1..9, got ", objects_min_, "..", objects_max_);
  TORCH_CHECK(std::isfinite(size_min_) && std::isfinite(size_max_) && size_min_ >= 0.1 && size_min_ <= size_max_ &&
                  size_max_ <= 1.0,
              "object scenes: size must be a range within 0.1..1 of the canvas, got ", size_min_, "..", size_max_);
  TORCH_CHECK(std::isfinite(jitter_) && jitter_ >= 0 && jitter_ <= 1, "object scenes: jitter must be in 0..1, got ",
              jitter_);
  TORCH_CHECK(std::isfinite(max_overlap_) && max_overlap_ >= 0 && max_overlap_ <= 1,
              "object scenes: max overlap must be in 0..1, got ", max_overlap_);
  TORCH_CHECK(background_level_ >= 0 && background_level_ <= 255,
              "object scenes: background level must be in 0..255, got ", background_level_);
  TORCH_CHECK(fragments_ >= 0 && fragments_ <= 100, "object scenes: fragments must be in 0..100, got ", fragments_);
  TORCH_CHECK(fragment_size_ >= 2 && fragment_size_ <= 28, "object scenes: fragment size must be in 2..28, got ",
              fragment_size_);
  TORCH_CHECK(mask_threshold_ >= 0 && mask_threshold_ <= 254, "object scenes: mask threshold must be in 0..254, got ",
              mask_threshold_);
  TORCH_CHECK(std::isfinite(relation_margin_) && relation_margin_ >= 0 &&
                  relation_margin_ <= static_cast<double>(canvas_) / 2,
              "object scenes: relation margin must be in 0..canvas/2, got ", relation_margin_);
  TORCH_CHECK(max_attempts_ >= 1 && max_attempts_ <= 1'000'000, "object scenes: max attempts must be in 1..1000000");
  const auto words = object_words(items_);
  for (const auto& t : held_out_) {
    for (const auto* w : {&t.subject, &t.object}) {
      TORCH_CHECK(std::find(words.begin(), words.end(), *w) != words.end(), "object scenes: held-out triple '",
                  t.str(), "' names '", *w, "', which is not a class word of ", to_string(items_));
    }
  }
}

nlohmann::json ObjectSceneOptions::to_json() const {
  nlohmann::json held = nlohmann::json::array();
  for (const auto& t : held_out_) held.push_back(t.str());
  return {{"canvas", canvas_},
          {"objects", {objects_min_, objects_max_}},
          {"items", to_string(items_)},
          {"size", {size_min_, size_max_}},
          {"jitter", jitter_},
          {"max_overlap", max_overlap_},
          {"distinct_classes", distinct_classes_},
          {"colour", colour_},
          {"background", to_string(background_)},
          {"background_level", background_level_},
          {"fragments", fragments_},
          {"fragment_size", fragment_size_},
          {"mask_threshold", mask_threshold_},
          {"relation_margin", relation_margin_},
          {"held_out", held},
          {"max_attempts", max_attempts_}};
}

ObjectSceneOptions ObjectSceneOptions::from_json(const nlohmann::json& j) {
  try {
    ObjectSceneOptions o;
    o.canvas(j.at("canvas").get<std::int64_t>())
        .objects_min(j.at("objects").at(0).get<std::int64_t>())
        .objects_max(j.at("objects").at(1).get<std::int64_t>())
        .items(parse_object_items(j.at("items").get<std::string>()))
        .size_min(j.at("size").at(0).get<double>())
        .size_max(j.at("size").at(1).get<double>())
        .jitter(j.at("jitter").get<double>())
        .max_overlap(j.at("max_overlap").get<double>())
        .distinct_classes(j.at("distinct_classes").get<bool>())
        .colour(j.at("colour").get<bool>())
        .background(parse_object_background(j.at("background").get<std::string>()))
        .background_level(j.at("background_level").get<std::int64_t>())
        .fragments(j.at("fragments").get<std::int64_t>())
        .fragment_size(j.at("fragment_size").get<std::int64_t>())
        .mask_threshold(j.at("mask_threshold").get<std::int64_t>())
        .relation_margin(j.at("relation_margin").get<double>())
        .max_attempts(j.value("max_attempts", std::int64_t{1000}));
    std::vector<RelationTriple> held;
    for (const auto& t : j.value("held_out", nlohmann::json::array())) held.push_back(RelationTriple::parse(t));
    o.held_out(held);
    o.validate();
    return o;
  } catch (const nlohmann::json::exception& e) {
    TORCH_CHECK(false, "object scene options: ", e.what());
  }
}

std::string ObjectScene::sentence(const std::vector<std::string>& tokens) {
  std::string out;
  for (const auto& t : tokens) out += (out.empty() ? "" : " ") + t;
  return out;
}

ObjectSceneGenerator::ObjectSceneGenerator(ObjectSceneOptions options, std::uint64_t seed,
                                           const ObjectSources& sources)
    : options_(std::move(options)), seed_(seed) {
  options_.validate();
  std::vector<Digits> train, test;
  std::vector<std::string> dirs;
  if (options_.items() != ObjectItems::kFashion) dirs.push_back(sources.digits_dir);
  if (options_.items() != ObjectItems::kDigits) dirs.push_back(sources.fashion_dir);
  for (const auto& dir : dirs) {
    train.push_back(load_split(dir, "train"));
    test.push_back(load_split(dir, "test"));
    for (const auto* d : {&train.back(), &test.back()}) {
      if (d->images.dim() != 3 || d->images.size(1) != 28 || d->images.size(2) != 28) {
        throw IoError(dir, "object scenes are made of 28x28 grey items (MNIST, Fashion-MNIST), found " +
                               c10::str(d->images.sizes().slice(1)));
      }
      check_labels(*d, 10);  // object scenes name items by the ten classes of MNIST or Fashion-MNIST
    }
  }
  init(std::move(train), std::move(test));
}

ObjectSceneGenerator::ObjectSceneGenerator(ObjectSceneOptions options, std::uint64_t seed, std::vector<Digits> train,
                                           std::vector<Digits> test)
    : options_(std::move(options)), seed_(seed) {
  options_.validate();
  init(std::move(train), std::move(test));
}

void ObjectSceneGenerator::init(std::vector<Digits> train, std::vector<Digits> test) {
  const size_t sources = options_.items() == ObjectItems::kBoth ? 2 : 1;
  TORCH_CHECK(train.size() == sources && test.size() == sources, "object scenes: expected ", sources,
              " train and test sources for ", to_string(options_.items()));
  words_ = object_words(options_.items());
  for (auto* list : {&train, &test}) {
    for (auto& d : *list) {
      TORCH_CHECK(d.images.defined() && d.images.dim() == 3 && d.images.size(1) == 28 && d.images.size(2) == 28 &&
                      d.images.scalar_type() == torch::kUInt8,
                  "object scenes: items must be uint8 [N,28,28] images, got ",
                  d.images.defined() ? d.images.sizes() : c10::IntArrayRef{});
      d.images = d.images.contiguous();
      d.labels = d.labels.to(torch::kInt64).contiguous();
      if (d.size() > 0) {
        TORCH_CHECK(d.labels.min().item<std::int64_t>() >= 0 && d.labels.max().item<std::int64_t>() <= 9,
                    "object scenes: item labels must be in 0..9");
      }
    }
  }
  train_ = std::move(train);
  test_ = std::move(test);
  for (auto& pool : pools_) pool.assign(sources, {});
  for (size_t s = 0; s < sources; ++s) {
    for (std::int64_t i = 0; i < train_[s].size(); ++i) {
      pools_[i % 10 == 9 ? 1 : 0][s].push_back(i);
    }
    for (std::int64_t i = 0; i < test_[s].size(); ++i) pools_[2][s].push_back(i);
    for (size_t split = 0; split < 3; ++split) {
      TORCH_CHECK(!pools_[split][s].empty(), "object scenes: the ", to_string(static_cast<ObjectSplit>(split)),
                  " split has no items of source ", s);
    }
  }
  for (const auto& t : options_.held_out()) held_out_.push_back(t.canonical());
}

const std::vector<std::int64_t>& ObjectSceneGenerator::pool(ObjectSplit split, std::size_t source) const {
  return pools_.at(static_cast<size_t>(split)).at(source);
}

std::int64_t ObjectSceneGenerator::classes() const { return static_cast<std::int64_t>(words_.size()); }

std::vector<std::string> object_caption_words(ObjectItems items) {
  std::vector<std::string> words{"a", "an", "at", "the", "to", "of", "and", "above", "below"};
  for (const auto* place : kPlaces) {
    for (const auto& w : split_words(place)) {
      if (std::find(words.begin(), words.end(), w) == words.end()) words.push_back(w);
    }
  }
  for (const auto& w : object_words(items)) words.push_back(w);
  return words;
}

ObjectScene ObjectSceneGenerator::generate(ObjectSplit split, std::int64_t index, std::int64_t epoch) const {
  TORCH_CHECK(index >= 0, "object scenes: negative scene index ", index);
  const auto& o = options_;
  const std::int64_t s = o.canvas();
  const std::int64_t nc = channels();
  const auto split_id = static_cast<std::uint64_t>(split);
  // Val and test are fixed; training scenes change with the epoch.
  const auto e = static_cast<std::uint64_t>(split == ObjectSplit::kTrain ? epoch : 0);
  Rng rng(stream_key(seed_, kObjectStream + split_id, mix64(e) ^ static_cast<std::uint64_t>(index)));
  const auto& pools = pools_[split_id];
  const auto& items = split == ObjectSplit::kTest ? test_ : train_;
  const double margin = o.relation_margin() > 0 ? o.relation_margin() : static_cast<double>(s) / 10.0;
  const std::int64_t offset_of_source[2] = {0, o.items() == ObjectItems::kBoth ? 10 : 0};

  // Items are contiguous uint8 [N,28,28] and int64 labels (init): read them in place,
  // not through a tensor view per draw.
  auto item_pixels = [&](const Sprite& sp) {
    return items[static_cast<size_t>(sp.source)].images.data_ptr<std::uint8_t>() + sp.item * 28 * 28;
  };
    auto draw_item = [&](Sprite& sp) {
    sp.source = pools.size() == 2 ? rng.uniform_int(2) : 0;
    const auto& pool = pools[static_cast<size_t>(sp.source)];
    sp.item = pool[static_cast<size_t>(rng.uniform_int(static_cast<std::int64_t>(pool.size())))];
    sp.label = items[static_cast<size_t>(sp.source)].labels.data_ptr<std::int64_t>()[sp.item] +
               offset_of_source[sp.source];
  };

  std::vector<Sprite> sprites;
  std::vector<std::int64_t> cells;
  std::optional<SceneRelationFact> relation;
  bool placed = false;
  std::int64_t class_failures = 0;  // attempts that found no new class to draw
  for (std::int64_t attempt = 0; attempt < o.max_attempts() && !placed; ++attempt) {
    const auto n = o.objects_min() + rng.uniform_int(o.objects_max() - o.objects_min() + 1);
    sprites.assign(static_cast<size_t>(n), {});
    bool ok = true;
    for (std::int64_t k = 0; k < n && ok; ++k) {
      auto& sp = sprites[static_cast<size_t>(k)];
      // Distinct classes: redraw the item until its class is new (bounded).
      bool fresh = false;
      for (int tries = 0; tries < 200 && !fresh; ++tries) {
        draw_item(sp);
        fresh = !o.distinct_classes() ||
                std::none_of(sprites.begin(), sprites.begin() + k, [&](const Sprite& q) { return q.label == sp.label; });
      }
      const double fraction = o.size_min() + rng.uniform() * (o.size_max() - o.size_min());
      sp.side = std::max<std::int64_t>(8, static_cast<std::int64_t>(std::lround(fraction * static_cast<double>(s))));
      const auto* src = item_pixels(sp);
      sp.pixels = resize_square(src, 28, sp.side);
      std::int64_t x0 = sp.side, y0 = sp.side, x1 = -1, y1 = -1;
      for (std::int64_t y = 0; y < sp.side; ++y) {
        for (std::int64_t x = 0; x < sp.side; ++x) {
          if (sp.pixels[static_cast<size_t>(y * sp.side + x)] > o.mask_threshold()) {
            x0 = std::min(x0, x), y0 = std::min(y0, y), x1 = std::max(x1, x), y1 = std::max(y1, y);
          }
        }
      }
      class_failures += fresh ? 0 : 1;
      ok = fresh && x1 >= 0;  // an item too faint to have a mask is redrawn
      sp.tight = {x0, y0, x1 - x0 + 1, y1 - y0 + 1};
    }
    if (!ok) continue;
    // Distinct cells, drawn without replacement.
    std::vector<std::int64_t> free_cells{0, 1, 2, 3, 4, 5, 6, 7, 8};
    cells.clear();
    for (std::int64_t k = 0; k < n; ++k) {
      const auto pick = rng.uniform_int(static_cast<std::int64_t>(free_cells.size()));
      cells.push_back(free_cells[static_cast<size_t>(pick)]);
      free_cells.erase(free_cells.begin() + pick);
    }
    for (std::int64_t k = 0; k < n && ok; ++k) {
      auto& sp = sprites[static_cast<size_t>(k)];
      const auto cell = cells[static_cast<size_t>(k)];
      const auto cx0 = cell_edge(cell % 3, s), cx1 = cell_edge(cell % 3 + 1, s);
      const auto cy0 = cell_edge(cell / 3, s), cy1 = cell_edge(cell / 3 + 1, s);
      const double cx = 0.5 * static_cast<double>(cx0 + cx1) +
                        (2 * rng.uniform() - 1) * o.jitter() * 0.5 * static_cast<double>(cx1 - cx0);
      const double cy = 0.5 * static_cast<double>(cy0 + cy1) +
                        (2 * rng.uniform() - 1) * o.jitter() * 0.5 * static_cast<double>(cy1 - cy0);
      const auto bw = sp.tight[2], bh = sp.tight[3];
      const auto bx = std::clamp<std::int64_t>(std::lround(cx - 0.5 * static_cast<double>(bw)), 0, s - bw);
      const auto by = std::clamp<std::int64_t>(std::lround(cy - 0.5 * static_cast<double>(bh)), 0, s - bh);
      if (bw > s || bh > s) ok = false;
      sp.frame_x = bx - sp.tight[0];
      sp.frame_y = by - sp.tight[1];
      const double centre_x = static_cast<double>(bx) + 0.5 * static_cast<double>(bw);
      const double centre_y = static_cast<double>(by) + 0.5 * static_cast<double>(bh);
      if (cell_of(centre_x, s) + 3 * cell_of(centre_y, s) != cell) ok = false;  // moved out of its cell
    }
    if (!ok) continue;
    auto box = [&](const Sprite& sp) {
      return Box{sp.frame_x + sp.tight[0], sp.frame_y + sp.tight[1], sp.tight[2], sp.tight[3]};
    };
    for (std::int64_t a = 0; a < n && ok; ++a) {
      for (std::int64_t b = a + 1; b < n && ok; ++b) {
        if (overlap_fraction(box(sprites[static_cast<size_t>(a)]), box(sprites[static_cast<size_t>(b)])) >
            o.max_overlap()) {
          ok = false;
        }
      }
    }
    if (!ok) continue;
    relation.reset();
    if (n == 2) {
      const auto ba = box(sprites[0]), bb = box(sprites[1]);
      const double dx = (static_cast<double>(2 * bb[0] + bb[2]) - static_cast<double>(2 * ba[0] + ba[2])) / 2;
      const double dy = (static_cast<double>(2 * bb[1] + bb[3]) - static_cast<double>(2 * ba[1] + ba[3])) / 2;
      std::string predicate;
      if (std::abs(dx) >= margin && std::abs(dx) - std::abs(dy) >= margin) {
        predicate = dx > 0 ? "left of" : "right of";
      } else if (std::abs(dy) >= margin && std::abs(dy) - std::abs(dx) >= margin) {
        predicate = dy > 0 ? "above" : "below";
      } else {
        continue;  // ambiguous: redrawn, never captioned wrongly
      }
      relation = SceneRelationFact{0, 1, predicate};
      if (split == ObjectSplit::kTrain && !held_out_.empty()) {
        const RelationTriple fact{words_[static_cast<size_t>(sprites[0].label)], predicate,
                                  words_[static_cast<size_t>(sprites[1].label)]};
        if (std::find(held_out_.begin(), held_out_.end(), fact.canonical()) != held_out_.end()) continue;
      }
    }
    placed = true;
  }
  TORCH_CHECK(placed || class_failures < o.max_attempts(), "object scenes: the ", to_string(split),
              " items have too few classes for scenes of distinct classes; allow repeated classes");
  TORCH_CHECK(placed, "object scenes: no valid layout for ", to_string(split), " scene ", index, " in ",
              o.max_attempts(), " attempts; use a larger canvas, smaller objects, a larger max overlap or fewer objects");

  // Paint: background, then the objects in order.
  ObjectScene scene;
  scene.image = torch::zeros(nc == 3 ? std::vector<std::int64_t>{s, s, 3} : std::vector<std::int64_t>{s, s},
                             torch::kUInt8);
  scene.instances = torch::zeros({s, s}, torch::kUInt8);
  scene.labels = torch::zeros({s, s}, torch::kUInt8);
  auto* img = scene.image.data_ptr<std::uint8_t>();
  auto* inst = scene.instances.data_ptr<std::uint8_t>();
  auto* lab = scene.labels.data_ptr<std::uint8_t>();
  const std::int64_t level = o.background_level();
  if (o.background() == ObjectBackground::kNoise && level > 0) {
    // Smooth noise: a 5x5 grid of random levels per channel, bilinearly upsampled.
    constexpr std::int64_t g = 5;
    for (std::int64_t c = 0; c < nc; ++c) {
      std::vector<std::uint8_t> grid(g * g);
      for (auto& v : grid) v = static_cast<std::uint8_t>(rng.uniform_int(level + 1));
      const auto up = resize_square(grid.data(), g, s);
      for (std::int64_t p = 0; p < s * s; ++p) img[p * nc + c] = up[static_cast<size_t>(p)];
    }
  } else if (o.background() == ObjectBackground::kClutter && level > 0) {
    for (std::int64_t f = 0; f < o.fragments(); ++f) {
      Sprite sp;
      draw_item(sp);
      const double fraction = o.size_min() + rng.uniform() * (o.size_max() - o.size_min());
      const auto side = std::max<std::int64_t>(8, std::lround(fraction * static_cast<double>(s)));
      const auto pixels =
          resize_square(item_pixels(sp), 28, side);
      const auto fs = std::min(side, std::max<std::int64_t>(2, o.fragment_size() * side / 28));
      const auto sx = rng.uniform_int(side - fs + 1), sy = rng.uniform_int(side - fs + 1);
      const auto px = rng.uniform_int(s - fs + 1), py = rng.uniform_int(s - fs + 1);
      const auto colour = nc == 3 ? hue_rgb(rng.uniform_int(360)) : std::array<std::uint8_t, 3>{255, 255, 255};
      for (std::int64_t y = 0; y < fs; ++y) {
        for (std::int64_t x = 0; x < fs; ++x) {
          const std::int64_t v = pixels[static_cast<size_t>((sy + y) * side + sx + x)] * level / 255;
          for (std::int64_t c = 0; c < nc; ++c) {
            auto& out = img[((py + y) * s + px + x) * nc + c];
            out = std::max<std::uint8_t>(out, static_cast<std::uint8_t>(v * colour[static_cast<size_t>(c)] / 255));
          }
        }
      }
    }
  }
  for (size_t k = 0; k < sprites.size(); ++k) {
    const auto& sp = sprites[k];
    PlacedObject obj;
    obj.label = sp.label;
    obj.word = words_[static_cast<size_t>(sp.label)];
    obj.item = sp.item;
    obj.bbox = {sp.frame_x + sp.tight[0], sp.frame_y + sp.tight[1], sp.tight[2], sp.tight[3]};
    obj.cell = cells[k];
    obj.cell_bbox = {cell_edge(obj.cell % 3, s), cell_edge(obj.cell / 3, s),
                     cell_edge(obj.cell % 3 + 1, s) - cell_edge(obj.cell % 3, s),
                     cell_edge(obj.cell / 3 + 1, s) - cell_edge(obj.cell / 3, s)};
    obj.centre_x = static_cast<double>(obj.bbox[0]) + 0.5 * static_cast<double>(obj.bbox[2]);
    obj.centre_y = static_cast<double>(obj.bbox[1]) + 0.5 * static_cast<double>(obj.bbox[3]);
    if (nc == 3) obj.colour = hue_rgb(rng.uniform_int(360));
    for (std::int64_t y = 0; y < sp.side; ++y) {
      const auto cy = sp.frame_y + y;
      if (cy < 0 || cy >= s) continue;
      for (std::int64_t x = 0; x < sp.side; ++x) {
        const auto cx = sp.frame_x + x;
        if (cx < 0 || cx >= s) continue;
        const std::int64_t a = sp.pixels[static_cast<size_t>(y * sp.side + x)];
        if (a == 0) continue;
        const auto p = cy * s + cx;
        for (std::int64_t c = 0; c < nc; ++c) {
          auto& out = img[p * nc + c];
          out = static_cast<std::uint8_t>((a * obj.colour[static_cast<size_t>(c)] + (255 - a) * out + 127) / 255);
        }
        if (a > o.mask_threshold()) inst[p] = static_cast<std::uint8_t>(k + 1);
      }
    }
    scene.objects.push_back(obj);
  }
  // The VOC label image with its ignore band.
  for (std::int64_t y = 0; y < s; ++y) {
    for (std::int64_t x = 0; x < s; ++x) {
      const auto p = y * s + x;
      const auto here = inst[p];
      bool band = false;
      if (x > 0 && inst[p - 1] > here) band = true;
      if (x + 1 < s && inst[p + 1] > here) band = true;
      if (y > 0 && inst[p - s] > here) band = true;
      if (y + 1 < s && inst[p + s] > here) band = true;
      lab[p] = band ? 255 : here == 0 ? 0 : static_cast<std::uint8_t>(scene.objects[here - 1u].label + 1);
    }
  }

  // Captions.
  const auto& obs = scene.objects;
  auto place = [&](const PlacedObject& ob) {
    auto words = split_words(std::string("at the ") + kPlaces[ob.cell]);
    words.insert(words.begin(), {article(ob.word), ob.word});
    return words;
  };
  if (obs.size() == 1) {
    scene.captions.push_back(place(obs[0]));
  } else if (obs.size() == 2) {
    scene.relation = relation;
    const auto& a = obs[0];
    const auto& b = obs[1];
    const auto& predicate = relation->predicate;
    const std::string inverse = predicate == "left of"    ? "right of"
                                : predicate == "right of" ? "left of"
                                : predicate == "above"    ? "below"
                                                          : "above";
    auto say = [&](const PlacedObject& x, const std::string& rel, const PlacedObject& y) {
      std::vector<std::string> words{article(x.word), x.word};
      const auto r = split_words(rel.find("of") != std::string::npos ? "to the " + rel : rel);
      words.insert(words.end(), r.begin(), r.end());
      words.insert(words.end(), {article(y.word), y.word});
      return words;
    };
    // The first caption names the left (or upper) object first: "left of" or "above".
    if (predicate == "left of" || predicate == "above") {
      scene.captions.push_back(say(a, predicate, b));
      scene.captions.push_back(say(b, inverse, a));
    } else {
      scene.captions.push_back(say(b, inverse, a));
      scene.captions.push_back(say(a, predicate, b));
    }
  } else {
    std::vector<size_t> order(obs.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t i, size_t j) { return obs[i].cell < obs[j].cell; });
    std::vector<std::string> words;
    for (size_t i = 0; i < order.size(); ++i) {
      if (i > 0) words.push_back("and");
      const auto p = place(obs[order[i]]);
      words.insert(words.end(), p.begin(), p.end());
    }
    scene.captions.push_back(words);
  }
  return scene;
}

ObjectSceneDataset::ObjectSceneDataset(std::shared_ptr<const ObjectSceneGenerator> generator, ObjectSplit split,
                                       std::int64_t count)
    : generator_(std::move(generator)), split_(split), count_(count),
      epoch_(std::make_shared<std::atomic<std::int64_t>>(0)) {
  TORCH_CHECK(generator_ != nullptr, "ObjectSceneDataset: no generator");
  TORCH_CHECK(count_ >= 1, "ObjectSceneDataset: count must be >= 1, got ", count_);
}

torch::data::Example<> ObjectSceneDataset::get_batch(c10::ArrayRef<size_t> indices) {
  const auto b = static_cast<std::int64_t>(indices.size());
  const auto s = generator_->options().canvas();
  const auto c = generator_->channels();
  auto data = torch::empty({b, c, s, s}, torch::kFloat32);
  auto target = torch::zeros({b, generator_->classes()}, torch::kFloat32);
  const auto epoch = epoch_->load();
  for (std::int64_t i = 0; i < b; ++i) {
    const auto index = static_cast<std::int64_t>(indices[static_cast<size_t>(i)]);
    TORCH_CHECK(index < count_, "ObjectSceneDataset: index ", index, " out of range for ", count_, " scenes");
    const auto scene = generator_->generate(split_, index, epoch);
    auto image = scene.image.to(torch::kFloat32).div_(255);
    data[i].copy_(c == 3 ? image.permute({2, 0, 1}) : image.unsqueeze(0));
    for (const auto& ob : scene.objects) target[i][ob.label] = 1.0f;
  }
  return {data, target};
}

torch::optional<size_t> ObjectSceneDataset::size() const { return static_cast<size_t>(count_); }

ObjectLabelSource::ObjectLabelSource(std::shared_ptr<const ObjectSceneGenerator> generator, ObjectSplit split,
                                     std::int64_t count, bool fresh_each_epoch)
    : generator_(std::move(generator)), split_(split), count_(count), fresh_(fresh_each_epoch) {
  TORCH_CHECK(generator_ != nullptr, "ObjectLabelSource: no generator");
  TORCH_CHECK(count_ >= 1, "ObjectLabelSource: count must be >= 1, got ", count_);
}

ObjectScene ObjectLabelSource::scene(std::int64_t index, std::int64_t epoch) const {
  TORCH_CHECK(index >= 0 && index < count_, "ObjectLabelSource: index ", index, " out of range for ", count_,
              " scenes");
  return generator_->generate(split_, index, fresh_ ? epoch : 0);
}

LabelledBatch ObjectLabelSource::get(const std::vector<std::int64_t>& indices, std::int64_t epoch) const {
  const auto b = static_cast<std::int64_t>(indices.size());
  const auto s = generator_->options().canvas();
  const auto c = generator_->channels();
  auto images = torch::empty({b, c, s, s}, torch::kFloat32);
  auto labels = torch::zeros({b, generator_->classes()}, torch::kFloat32);
  auto masks = torch::empty({b, s, s}, torch::kInt64);
  for (std::int64_t i = 0; i < b; ++i) {
    const auto sc = scene(indices[static_cast<size_t>(i)], epoch);
    auto image = sc.image.to(torch::kFloat32).div_(255);
    images[i].copy_(c == 3 ? image.permute({2, 0, 1}) : image.unsqueeze(0));
    for (const auto& ob : sc.objects) labels[i][ob.label] = 1.0f;
    masks[i].copy_(sc.labels);
  }
  return {images, labels, masks};
}

namespace {

std::string png_bytes(const torch::Tensor& image, const std::string& path) {
  const auto t = image.contiguous();
  cv::Mat mat;
  if (t.dim() == 3) {
    cv::Mat rgb(static_cast<int>(t.size(0)), static_cast<int>(t.size(1)), CV_8UC3, t.data_ptr<std::uint8_t>());
    mat.create(rgb.rows, rgb.cols, CV_8UC3);
    // RGB -> BGR for OpenCV, by hand (no imgproc needed for a channel swap).
    for (int y = 0; y < rgb.rows; ++y) {
      const auto* in = rgb.ptr<std::uint8_t>(y);
      auto* out = mat.ptr<std::uint8_t>(y);
      for (int x = 0; x < rgb.cols; ++x) {
        out[3 * x] = in[3 * x + 2], out[3 * x + 1] = in[3 * x + 1], out[3 * x + 2] = in[3 * x];
      }
    }
  } else {
    mat = cv::Mat(static_cast<int>(t.size(0)), static_cast<int>(t.size(1)), CV_8UC1, t.data_ptr<std::uint8_t>());
  }
  std::vector<std::uint8_t> buffer;
  if (!cv::imencode(".png", mat, buffer)) throw IoError(path, "cannot encode as PNG");
  return std::string(buffer.begin(), buffer.end());
}

/// fsync of a folder (makes a removal durable); best effort.
void sync_folder(const std::string& folder) {
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

/// Writes back every dirty page of the file system holding `folder` and reports
/// write-back errors (ENOSPC, EIO) that the unsynced renames would otherwise hide.
void sync_filesystem(const std::string& folder) {
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw IoError(folder, std::string("cannot open to sync: ") + std::strerror(errno));
  const int rc = ::syncfs(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw IoError(folder, std::string("writing the images failed: ") + std::strerror(err));
}

}  // namespace

nlohmann::json write_object_scenes(const ObjectSceneGenerator& generator, const ObjectSceneCounts& counts,
                                   const std::string& folder, int threads, const std::atomic<bool>* stop) {
  namespace fs = std::filesystem;
  TORCH_CHECK(counts.train >= 0 && counts.val >= 0 && counts.test >= 0, "object scenes: negative scene count");
  // A layout the options make impossible shows on the first scenes: fail before
  // writing anything.
  if (counts.train > 0) generator.generate(ObjectSplit::kTrain, 0);
  if (counts.val > 0) generator.generate(ObjectSplit::kVal, 0);
  if (counts.test > 0) generator.generate(ObjectSplit::kTest, 0);
  // An earlier data set in this folder stops being complete before its files change.
  const auto json_path = (fs::path(folder) / "dataset_objects.json").string();
  {
    std::error_code ec;
    if (fs::remove(json_path, ec)) sync_folder(folder);
    if (ec) throw IoError(json_path, "cannot remove the earlier data set's JSON: " + ec.message());
  }
  for (const char* sub : {"images", "masks", "instances"}) {
    std::error_code ec;
    fs::create_directories(fs::path(folder) / sub, ec);
    if (ec) throw IoError((fs::path(folder) / sub).string(), "cannot create folder: " + ec.message());
  }
  struct Job {
    ObjectSplit split;
    std::int64_t index;
  };
  std::vector<Job> jobs;
  for (auto [split, n] : {std::pair{ObjectSplit::kTrain, counts.train}, std::pair{ObjectSplit::kVal, counts.val},
                          std::pair{ObjectSplit::kTest, counts.test}}) {
    for (std::int64_t i = 0; i < n; ++i) jobs.push_back({split, i});
  }
  std::vector<nlohmann::json> entries(jobs.size());
  std::exception_ptr failure;
  std::mutex failure_mutex;
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t j = next++; j < jobs.size(); j = next++) {
      if (stop != nullptr && stop->load()) {
        next = jobs.size();
        break;
      }
      try {
        const auto scene = generator.generate(jobs[j].split, jobs[j].index);
        char name[32];
        std::snprintf(name, sizeof name, "%06zu.png", j);
        const std::string image = std::string("images/") + name, mask = std::string("masks/") + name,
                          instances = std::string("instances/") + name;
        for (const auto& [file, tensor] :
             {std::pair{image, scene.image}, std::pair{mask, scene.labels}, std::pair{instances, scene.instances}}) {
          const auto path = (fs::path(folder) / file).string();
          write_file_atomically(path, png_bytes(tensor, path), /*durable=*/false);
        }
        nlohmann::json objects = nlohmann::json::array();
        for (size_t k = 0; k < scene.objects.size(); ++k) {
          const auto& ob = scene.objects[k];
          objects.push_back({{"label", ob.label},
                             {"word", ob.word},
                             {"bbox", ob.bbox},
                             {"cell_bbox", ob.cell_bbox},
                             {"mask", instances},
                             {"instance", k + 1}});
        }
        nlohmann::json sentences = nlohmann::json::array();
        for (const auto& tokens : scene.captions) {
          sentences.push_back({{"tokens", tokens}, {"raw", ObjectScene::sentence(tokens)}});
        }
        nlohmann::json entry = {{"filename", std::string(name)},
                                {"filepath", "images"},
                                {"imgid", j},
                                {"split", to_string(jobs[j].split)},
                                {"sentences", sentences},
                                {"mask", mask},
                                {"instances", instances},
                                {"objects", objects}};
        if (scene.relation) {
          entry["relation"] = {{"subject", scene.relation->subject},
                               {"predicate", scene.relation->predicate},
                               {"object", scene.relation->object}};
        }
        entries[j] = std::move(entry);
      } catch (...) {
        std::lock_guard<std::mutex> lock(failure_mutex);
        if (!failure) failure = std::current_exception();
        next = jobs.size();
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < std::max(1, threads); ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (failure) std::rethrow_exception(failure);
  if (stop != nullptr && stop->load()) {
    throw DataSetInterrupted(folder + ": stopped before every scene was written; no dataset_objects.json");
  }
  // Files of an earlier, larger data set in this folder are not part of this one.
  for (const char* sub : {"images", "masks", "instances"}) {
    std::error_code ec;
    for (fs::directory_iterator it(fs::path(folder) / sub, ec), end; !ec && it != end; it.increment(ec)) {
      const auto name = it->path().filename().string();
      if (name.size() == 10 && name.compare(6, 4, ".png") == 0 &&
          name.find_first_not_of("0123456789") == 6 && std::stoull(name.substr(0, 6)) >= jobs.size()) {
        std::error_code ignored;
        fs::remove(it->path(), ignored);
      }
    }
  }

  // Sentence ids in image order, as in Karpathy's files.
  std::int64_t sentid = 0;
  nlohmann::json images = nlohmann::json::array();
  for (size_t j = 0; j < entries.size(); ++j) {
    auto& entry = entries[j];
    nlohmann::json ids = nlohmann::json::array();
    for (auto& sentence : entry["sentences"]) {
      sentence["imgid"] = j;
      sentence["sentid"] = sentid;
      ids.push_back(sentid++);
    }
    entry["sentids"] = ids;
    images.push_back(std::move(entry));
  }
  nlohmann::json out = {{"dataset", "objects"},
                        {"classes", generator.words()},
                        {"seed", generator.seed()},
                        {"options", generator.options().to_json()},
                        {"images", std::move(images)}};
  // The images reach the disk before the JSON that declares the set complete.
  sync_filesystem(folder);
  write_file_atomically(json_path, out.dump() + "\n");
  return out;
}

}  // namespace attend::datasets
