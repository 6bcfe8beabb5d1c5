/// Fuzzes the caption-set reader (datasets/src/captions.cpp): Karpathy-format JSON
/// with attend's scene fields, as `attend train captioner --captions`, `caption` and
/// `score` read it.
///
/// Each input is written as dataset.json in a scratch image root that holds the
/// (empty) files the seeds name, then read twice: without the file check (`score`,
/// `caption`) and with it (training). On success the set is used as training uses
/// it: the splits, a vocabulary of every token, padded batches.
/// Findings besides the general rule (fuzz_support.h): a set read with the file check
/// that the reading without it refuses or reads otherwise; a broken postcondition
/// (empty token, sentence without tokens, split name, resolved path, relation and
/// instance ranges); a c10::Error from Vocabulary or make_caption_batch on tokens the
/// reader accepted; a vocabulary that does not survive to_json/from_json.

#include "fuzz_support.h"

#include <attend/datasets/captions.h>

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace {

namespace ad = attend::datasets;
namespace af = attend::fuzz;
namespace fs = std::filesystem;

/// Files the seeds name (fuzz/make_corpus.cpp), relative to the image root.
const char* const kExistingFiles[] = {
    "a.jpg", "b.jpg", "c.png", "val2014/x.jpg", "val2014/y.jpg", "images/000000.png", "images/000001.png",
    "masks/000000.png", "masks/000001.png", "instances/000000.png", "instances/000001.png"};

const fs::path& image_root() {
  static const fs::path* root = [] {
    auto* r = new fs::path(af::scratch_dir() / "root");
    for (const char* name : kExistingFiles) {
      fs::create_directories((*r / name).parent_path());
      std::ofstream((*r / name).string()).put('x');
    }
    return r;
  }();
  return *root;
}

void check_set(const ad::CaptionSet& set, const std::string& what) {
  for (const auto& image : set.images) {
    if (image.filename.empty()) af::finding(what, "an image with an empty filename");
    if (image.split != "train" && image.split != "val" && image.split != "test" && image.split != "restval") {
      af::finding(what, "an image in split '" + image.split + "'");
    }
    fs::path expected(set.image_root);
    if (!image.filepath.empty()) expected /= image.filepath;
    expected /= image.filename;
    if (image.path != expected.string()) af::finding(what, "resolved path " + image.path + " for " + expected.string());
    for (const auto& sentence : image.sentences) {
      if (sentence.tokens.empty()) af::finding(what, "a sentence without tokens");
      for (const auto& token : sentence.tokens) {
        if (token.empty()) af::finding(what, "an empty token");
      }
    }
    for (const auto& object : image.objects) {
      if (object.label < 0) af::finding(what, "a negative label");
      if (object.bbox[2] <= 0 || object.bbox[3] <= 0) af::finding(what, "an empty box");
      if (object.instance < 0 || object.instance > 255) af::finding(what, "an instance outside 0..255");
    }
    if (image.relation) {
      const auto n = static_cast<std::int64_t>(image.objects.size());
      const auto& r = *image.relation;
      if (r.subject < 0 || r.subject >= n || r.object < 0 || r.object >= n || r.subject == r.object ||
          r.predicate.empty()) {
        af::finding(what, "a relation outside its image's objects");
      }
    }
  }
}

bool same_sets(const ad::CaptionSet& a, const ad::CaptionSet& b) {
  if (a.dataset != b.dataset || a.images.size() != b.images.size()) return false;
  for (std::size_t i = 0; i < a.images.size(); ++i) {
    const auto &x = a.images[i], &y = b.images[i];
    if (x.path != y.path || x.split != y.split || x.imgid != y.imgid || x.sentences.size() != y.sentences.size() ||
        x.objects.size() != y.objects.size() || x.mask != y.mask || x.instances != y.instances) {
      return false;
    }
    for (std::size_t s = 0; s < x.sentences.size(); ++s) {
      if (x.sentences[s].tokens != y.sentences[s].tokens) return false;
    }
  }
  return true;
}

/// What training does with a set: splits, a vocabulary, padded batches.
void use_set(const ad::CaptionSet& set) {
  try {
    std::size_t in_splits = 0;
    for (const char* name : {"train", "val", "test"}) in_splits += set.split(name).size();
    if (in_splits != set.images.size()) af::finding("CaptionSet::split", "images in no split");
    std::vector<std::vector<std::string>> captions;
    for (const auto& image : set.images) {
      for (const auto& sentence : image.sentences) captions.push_back(sentence.tokens);
    }
    const auto vocab = ad::Vocabulary::build(captions, 1);
    if (ad::Vocabulary::from_json(vocab.to_json()) != vocab) {
      af::finding("Vocabulary", "to_json/from_json does not give the same vocabulary");
    }
    const auto batch = ad::make_caption_batch(vocab, captions, 16);
    if (batch.tokens.size(0) != static_cast<std::int64_t>(captions.size()) ||
        (batch.lengths.numel() > 0 && batch.lengths.max().item<std::int64_t>() > 16)) {
      af::finding("make_caption_batch", "a batch of the wrong shape");
    }
  } catch (const c10::Error& e) {
    af::finding("captions training path", std::string("c10::Error on a set the reader accepted: ") +
                                              e.what_without_backtrace());
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  torch::set_num_threads(1);
  image_root();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto json_path = (image_root() / "dataset.json").string();
  af::write_input("root/dataset.json", data, size);

  ad::CaptionSet unchecked, checked;
  const bool read = af::accepts("read_caption_set (check_files off)", [&] {
    unchecked = ad::read_caption_set(json_path, "", ad::CaptionReadOptions().check_files(false));
  });
  const bool read_checked = af::accepts("read_caption_set", [&] { checked = ad::read_caption_set(json_path); });
  if (read_checked && !read) af::finding("read_caption_set", "accepted with the file check, refused without it");
  if (!read) return 0;
  check_set(unchecked, "read_caption_set (check_files off)");
  if (read_checked && !same_sets(unchecked, checked)) {
    af::finding("read_caption_set", "reads otherwise with the file check than without it");
  }
  use_set(unchecked);
  return 0;
}
