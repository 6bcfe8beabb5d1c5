// attend score --references dataset.json --candidates captions.json: the COCO caption
// metrics (BLEU-1..4, ROUGE-L, CIDEr-D) of any system's captions against the
// references of a caption data set in Karpathy's layout.
#include "../cli.h"
#include "../validate.h"

#include <attend/datasets/captions.h>
#include <attend/io_error.h>
#include <attend/models/caption_metrics.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <iomanip>
#include <map>
#include <sstream>

namespace attend::cli {
namespace {

namespace ds = attend::datasets;
namespace am = attend::models;

/// The tokens a reference is scored by: its raw text tokenised as coco does, or the
/// file's tokens when it has no raw text.
std::vector<std::string> reference_tokens(const ds::CaptionSentence& s) {
  if (s.raw.empty()) return s.tokens;
  return am::coco_tokenize(s.raw);
}

class ScoreCommand : public Command {
 public:
  std::string name() const override { return "score"; }
  std::string summary() const override { return "score captions against references: BLEU-1..4, ROUGE-L, CIDEr-D"; }
  std::string usage() const override {
    return "attend score --references dataset.json --candidates captions.json [--split S] [--json]";
  }
  std::string description() const override {
    return "The metrics as the COCO caption evaluation computes them (corpus BLEU with the closest reference\n"
           "length, ROUGE-L with beta 1.2, CIDEr-D with sigma 6 and document frequencies from these references).\n"
           "Candidates: a JSON list of {\"image\": file name or imgid, \"caption\": text}, exactly one per image of\n"
           "the split. Captions and raw references are lower-cased and split off punctuation as coco's PTB\n"
           "tokenizer does for plain text (contractions and some quotes differ; see docs/data.md).\n";
  }
  std::vector<std::string> examples() const override {
    return {"attend score --references out/objects-l2/dataset_objects.json --candidates captions.json",
            "attend score --references dataset_flickr8k.json --candidates mine.json --split val --json"};
  }
  std::vector<po::options_description> options() override {
    po::options_description d("Scoring", 100);
    d.add_options()
        ("references", po::value<std::string>()->value_name("FILE"),
         "caption data set in Karpathy's layout (dataset_coco.json, dataset_flickr8k.json, ours)")
        ("candidates", po::value<std::string>()->value_name("FILE"), "the captions to score (JSON list)")
        ("split", po::value<std::string>()->default_value("test")->value_name("S"),
         "which images of the references are scored: train, val, test, restval or all")
        ("per-image", po::bool_switch(), "with --json, also each image's scores")
        ("json", po::bool_switch(), "print the scores as JSON");
    return {d};
  }

  int run(const po::variables_map& vm, const GlobalOptions& /*global*/, Streams& io) override {
    if (!vm.count("references")) throw UsageError("score: --references is required");
    if (!vm.count("candidates")) throw UsageError("score: --candidates is required");
    const auto split = require_one_of(vm, "split", {"train", "val", "test", "restval", "all"});
    if (vm["per-image"].as<bool>() && !vm["json"].as<bool>()) throw UsageError("score: --per-image needs --json");
    const auto references_path = vm["references"].as<std::string>();
    const auto candidates_path = vm["candidates"].as<std::string>();
    const auto set = ds::read_caption_set(references_path, "", ds::CaptionReadOptions().check_files(false));
    std::vector<const ds::CaptionImage*> images;
    if (split == "all") {
      for (const auto& image : set.images) images.push_back(&image);
    } else {
      images = set.split(split, /*restval_as_train=*/false);
    }
    if (images.empty()) throw IoError(references_path, "no images in split '" + split + "'");
    std::map<std::string, size_t> by_name, by_id;
    // A candidate names its image by file name or imgid: both must be unambiguous.
    for (size_t i = 0; i < images.size(); ++i) {
      const auto id = std::to_string(images[i]->imgid);
      if (const auto [it, fresh] = by_name.emplace(images[i]->filename, i); !fresh) {
        throw IoError(references_path, "two images of the split are named '" + images[i]->filename + "' (imgid " +
                                           std::to_string(images[it->second]->imgid) + " and " + id +
                                           "); candidates could not say which they caption");
      }
      if (const auto [it, fresh] = by_id.emplace(id, i); !fresh) {
        throw IoError(references_path, "two images of the split have imgid " + id + " ('" +
                                           images[it->second]->filename + "' and '" + images[i]->filename + "')");
      }
    }

    std::ifstream in(candidates_path);
    if (!in) throw IoError(candidates_path, "cannot open");
    nlohmann::json list;
    try {
      list = nlohmann::json::parse(in);
    } catch (const nlohmann::json::parse_error& e) {
      throw IoError(candidates_path, std::string("not valid JSON: ") + e.what());
    }
    if (!list.is_array()) throw IoError(candidates_path, "expected a JSON list of {\"image\", \"caption\"}");
    std::vector<std::vector<std::string>> candidates(images.size());
    std::vector<std::string> seen(images.size());
    for (size_t c = 0; c < list.size(); ++c) {
      const auto& entry = list[c];
      const std::string where = "[" + std::to_string(c) + "]";
      if (!entry.is_object() || !entry.contains("image") || !entry.contains("caption") ||
          !entry["caption"].is_string() || !(entry["image"].is_string() || entry["image"].is_number_integer())) {
        throw IoError(candidates_path, where + ": expected {\"image\": file name or imgid, \"caption\": text}");
      }
      const auto key = entry["image"].is_string() ? entry["image"].get<std::string>()
                                                  : std::to_string(entry["image"].get<std::int64_t>());
      size_t index = 0;
      if (const auto named = by_name.find(key); named != by_name.end()) {
        index = named->second;
      } else if (const auto numbered = by_id.find(key); numbered != by_id.end()) {
        index = numbered->second;
      } else {
        throw IoError(candidates_path, where + ": image '" + key + "' is not in the '" + split + "' split of " +
                                           references_path);
      }
      if (!seen[index].empty()) {
        throw IoError(candidates_path, where + ": a second caption for image '" + key + "' (the first is " +
                                           seen[index] + ")");
      }
      seen[index] = where;
      candidates[index] = am::coco_tokenize(entry["caption"].get<std::string>());
    }
    std::vector<std::vector<std::vector<std::string>>> references(images.size());
    for (size_t i = 0; i < images.size(); ++i) {
      if (seen[i].empty()) {
        throw IoError(candidates_path, "no caption for image '" + images[i]->filename + "' (imgid " +
                                           std::to_string(images[i]->imgid) + ")");
      }
      for (const auto& s : images[i]->sentences) {
        auto tokens = reference_tokens(s);
        if (!tokens.empty()) references[i].push_back(std::move(tokens));
      }
      if (references[i].empty()) {
        throw IoError(references_path, "image '" + images[i]->filename + "' has no reference caption");
      }
    }
    const auto scores = am::score_captions(candidates, references);
    const char* names[] = {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4"};
    if (vm["json"].as<bool>()) {
      nlohmann::json out = {{"images", images.size()},
                            {"split", split},
                            {"bleu", scores.bleu},
                            {"rouge_l", scores.rouge_l},
                            {"cider_d", scores.cider_d}};
      if (vm["per-image"].as<bool>()) {
        nlohmann::json rows = nlohmann::json::array();
        for (size_t i = 0; i < images.size(); ++i) {
          const auto& p = scores.per_image[i];
          rows.push_back({{"image", images[i]->filename},
                          {"bleu", p.bleu},
                          {"rouge_l", p.rouge_l},
                          {"cider_d", p.cider_d}});
        }
        out["per_image"] = rows;
      }
      io.out << out.dump(2) << "\n";
      return kSuccess;
    }
    io.out << images.size() << " images (" << split << ") of " << references_path << "\n";
    io.out << std::fixed << std::setprecision(4);
    for (int n = 0; n < 4; ++n) io.out << "  " << std::left << std::setw(8) << names[n] << scores.bleu[n] << "\n";
    io.out << "  " << std::setw(8) << "ROUGE-L" << scores.rouge_l << "\n";
    io.out << "  " << std::setw(8) << "CIDEr-D" << scores.cider_d << "\n";
    return kSuccess;
  }
};

}  // namespace

std::unique_ptr<Command> make_score_command() { return std::make_unique<ScoreCommand>(); }

}  // namespace attend::cli
