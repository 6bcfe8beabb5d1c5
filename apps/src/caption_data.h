#pragma once
/// Where `attend train captioner` and `attend eval` of a captioner get images and
/// captions: a caption file in Karpathy's layout (--data dataset.json, --images DIR)
/// or object scenes generated on the fly (--scenes objects and the scene options).
/// The choice is written down as JSON (a checkpoint's data part), from which the
/// sources are opened again.
///
///   {"kind": "captions", "dataset": "<json>", "images": "<dir>", "channels": C,
///    "height": H, "width": W}
///   {"kind": "objects", "options": {ObjectSceneOptions}, "seed": S,
///    "sources": {"digits": DIR, "fashion": DIR},
///    "counts": {"train": N, "val": N, "test": N}}

#include "cli.h"

#include <attend/datasets/caption_source.h>

#include <nlohmann/json.hpp>

#include <iosfwd>
#include <memory>

namespace attend::cli {

/// --data, --images, --image-size, --channels, --scenes, --source, --canvas,
/// --fragments, --fragment-size, --count, --val-count, --test-count; and the scene
/// options' group.
std::vector<po::options_description> caption_data_options();

/// The data the options describe. Without an image size, the first training image's
/// size and channels are used (the file is decoded to find them).
/// throws UsageError naming the option; attend::IoError for an unreadable caption file.
nlohmann::json caption_data_description(const po::variables_map& vm, std::uint64_t seed);

struct CaptionData {
  std::unique_ptr<datasets::CaptionSource> train, val, test;  ///< those asked for (val may be null: none)
  /// For a vocabulary: every training reference (files), or every word the scenes
  /// can use, once (scenes).
  std::vector<std::vector<std::string>> vocabulary_text;
  /// Training references longer than `max_words` words (files; scenes have none).
  std::int64_t over_long = 0;
};

/// Opens the splits of `description` that are asked for. File images are decoded on
/// `threads` threads; grey files for a colour model (or the reverse) are converted
/// and images of another size resized, each said once on `notes`.
/// throws attend::IoError naming the file for unreadable data; UsageError for a
/// description that does not parse.
CaptionData open_caption_data(const nlohmann::json& description, bool train, bool val, bool test, int threads,
                              std::ostream& notes, std::int64_t max_words = 1 << 30);

/// One line saying what the data are, e.g. "object scenes (2 digits, 64x64 grey): 5000
/// train, 500 val, 500 test".
std::string describe_caption_data(const nlohmann::json& description);

}  // namespace attend::cli
