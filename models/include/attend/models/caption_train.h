#pragma once
/// Training and evaluation of captioners on the shared engine (fit): teacher forcing
/// on one reference caption per image (drawn afresh each epoch), validation by
/// free-running greedy decoding scored with CIDEr-D and BLEU-4, best checkpoint and
/// early stopping on one of them; and the evaluation a user reads: the COCO caption
/// metrics and, on data with objects, what the captions say about them and where
/// the model looked when it named them.

#include <attend/datasets/caption_source.h>
#include <attend/models/caption_metrics.h>
#include <attend/models/caption_model.h>
#include <attend/models/train.h>

#include <atomic>
#include <string>
#include <vector>

namespace attend::models {

/// Which validation metric picks best.pt and drives early stopping.
enum class CaptionMonitor { kCider, kBleu4 };
template <>
struct EnumNames<CaptionMonitor> {
  static constexpr const char* what = "monitored metric";
  static constexpr std::pair<CaptionMonitor, const char*> names[] = {{CaptionMonitor::kCider, "cider"},
                                                                     {CaptionMonitor::kBleu4, "bleu4"}};
};

/// Which of an image's reference captions it is trained on in an epoch.
enum class CaptionReferences {
  kRandom,  ///< one drawn afresh every epoch (every reference is used; the usual way)
  kFirst,   ///< always the first: for data whose first caption follows one convention
};
template <>
struct EnumNames<CaptionReferences> {
  static constexpr const char* what = "training references";
  static constexpr std::pair<CaptionReferences, const char*> names[] = {{CaptionReferences::kRandom, "random"},
                                                                        {CaptionReferences::kFirst, "first"}};
};

/// What train_captioner needs beyond the engine's TrainOptions.
struct CaptionTrainOptions {
  /// The validation metric that picks best.pt and drives --patience.
  TORCH_ARG(CaptionMonitor, monitor) = CaptionMonitor::kCider;
  TORCH_ARG(CaptionReferences, references) = CaptionReferences::kRandom;
};

/// The reference that training image `index` (its index in the training source) is
/// trained on in `epoch`: the first, or one drawn from a stream of (seed, epoch,
/// index), so the choice depends neither on the batch nor on how a batch is split
/// between processes, and a resumed run draws the same.
/// requires: target.references not empty (else throws c10::Error naming the image).
const std::vector<std::string>& training_reference(const datasets::CaptionTarget& target, std::int64_t index,
                                                   std::uint64_t seed, std::int64_t epoch,
                                                   CaptionReferences references);

/// Trains on `train`; with `validation`, decodes it greedily after every epoch and
/// reports "cider", "bleu4" (and "exact" when it has objects), keeps best.pt on
/// `captioning.monitor` and applies patience. Training captions longer than the
/// model's max_length are cut to it; words outside the vocabulary become <unk>. Each
/// image's caption of each epoch is training_reference's, so a resumed run continues
/// bit-exactly. Step metrics: "xent" (per word), "reg" (doubly stochastic term), and
/// for hard attention "reinforce" and "entropy".
/// throws c10::Error when a source's images do not fit the model or a source is empty.
FitSummary train_captioner(CaptionModel& model, const datasets::CaptionSource& train,
                           const datasets::CaptionSource* validation, const TrainOptions& options,
                           const CaptionTrainOptions& captioning,
                           const nlohmann::json& data = nlohmann::json::object(),
                           TrainingObserver* observer = nullptr, const std::atomic<bool>* stop = nullptr,
                           FitHooks hooks = {});

/// Attention on named objects: for each object word of a caption matched to an
/// object of the image, the weights alpha of the step that produced it.
struct GroundingScores {
  std::int64_t words = 0;     ///< object words measured
  double mass = 0.0;          ///< mean attention mass inside the object's box
  double pointing = 0.0;      ///< fraction whose argmax cell's centre is inside the box
  double chance_mass = 0.0;   ///< the same under uniform attention (1/N on every cell)
  double chance_pointing = 0.0;
};

/// Mass of `alpha` (N = rows*columns cells in reading order, each `stride` pixels
/// square) inside box {x, y, w, h} (pixels), partial cells by their overlapping area;
/// and whether the centre of the argmax cell lies inside the box.
/// requires alpha [N] float, N = rows * columns.
std::pair<double, bool> box_attention(const torch::Tensor& alpha, std::int64_t rows, std::int64_t columns,
                                      std::int64_t stride, const std::array<std::int64_t, 4>& box);

/// What an object-scene caption says: its object words in order, and per object the
/// words of its place ("top left") or, for two objects, the relation.
struct ParsedCaption {
  std::vector<std::string> objects;
  std::vector<std::string> places;        ///< one per object ("" when none): "at the <place>"
  std::optional<datasets::RelationTriple> relation;  ///< "a X to the left of a Y", "a X above a Y", ...
};
/// `object_words`: the words that name objects.
ParsedCaption parse_scene_caption(const std::vector<std::string>& tokens,
                                  const std::vector<std::string>& object_words);

struct CaptionEvalOptions {
  TORCH_ARG(std::int64_t, beam) = 1;
  TORCH_ARG(double, length_penalty) = 0.0;
  TORCH_ARG(std::int64_t, batch_size) = 64;
  /// Also measure grounding under teacher forcing on each image's first reference.
  TORCH_ARG(bool, teacher_forced_grounding) = true;
};

struct CaptionEvaluation {
  std::int64_t count = 0;
  std::vector<std::string> names;                  ///< per image
  std::vector<std::vector<std::string>> captions;  ///< generated words per image
  std::vector<DecodedCaption> decoded;             ///< with alphas and betas
  CaptionScores scores;                            ///< BLEU-1..4, ROUGE-L, CIDEr-D
  double exact_match = 0.0;                        ///< caption equal to one of the references
  std::int64_t finished = 0;                       ///< captions that emitted <end>
  double mean_length = 0.0;                        ///< words per generated caption
  // On data with objects (has_objects):
  bool has_objects = false;
  double object_accuracy = 0.0;    ///< images whose caption names exactly their objects (as a multiset)
  double relation_accuracy = 0.0;  ///< images whose caption states their relation (two objects) or each
                                   ///< object's place (one, three or more) as the references do
  std::int64_t relation_count = 0; ///< images with a relation measured
  GroundingScores generated;       ///< on the generated captions
  GroundingScores teacher_forced;  ///< on the first reference, teacher-forced
  double seconds = 0.0;
};

/// Decodes every image of `source` (epoch 0) and scores the captions against its
/// references. requires a source whose images fit the model and have references.
CaptionEvaluation evaluate_captioner(CaptionModel& model, const datasets::CaptionSource& source,
                                     const CaptionEvalOptions& options = {});

/// Does the model say what it attends to? For each image whose greedy caption names
/// two of its objects, the caption is replayed up to the first object word, and at
/// that step alpha is replaced by the map with which the model named the second
/// object; `says_second` is how often the word then produced is the second object's
/// class (`says_first`: still the first's). As a control, the same with alpha
/// replaced by the uniform map (1/N everywhere). Soft attention only.
struct InterventionResult {
  std::int64_t images = 0;           ///< images whose caption named two objects
  double says_second = 0.0;          ///< with the second object's map
  double says_first = 0.0;
  double uniform_says_second = 0.0;  ///< control: with the uniform map
  double uniform_says_first = 0.0;
};
/// throws c10::Error for a model without soft attention.
InterventionResult attention_intervention(CaptionModel& model, const datasets::CaptionSource& source,
                                          std::int64_t batch_size = 64);

/// The evaluation as JSON (the per-image captions left out unless `per_image`).
nlohmann::json to_json(const CaptionEvaluation& e, bool per_image = false);

}  // namespace attend::models
