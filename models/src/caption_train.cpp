#include "attend/models/caption_train.h"

#include <attend/datasets/rng.h>

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <set>

namespace attend::models {
namespace {

namespace ds = attend::datasets;

// Stream of datasets::stream_key(seed, n, ...) drawn here (5 and 6 are train.cpp's).
constexpr std::uint64_t kReferenceStream = 7;

std::vector<std::int64_t> range_indices(std::int64_t begin, std::int64_t end) {
  std::vector<std::int64_t> out;
  for (auto i = begin; i < end; ++i) out.push_back(i);
  return out;
}

void check_fits(const CaptionModel& model, const ds::CaptionSource& source, const char* what) {
  TORCH_CHECK(source.size() > 0, "captioner: the ", what, " set is empty");
  TORCH_CHECK(source.channels() == model.channels() && source.height() == model.height() &&
                  source.width() == model.width(),
              "captioner: the ", what, " images are ", source.channels(), "x", source.height(), "x", source.width(),
              " but the model expects ", model.channels(), "x", model.height(), "x", model.width());
}

/// The objects a caption's words name, matched in order to unused objects of the image.
std::vector<std::pair<std::int64_t, std::int64_t>> matched_objects(const std::vector<std::string>& words,
                                                                   const ds::CaptionTarget& target) {
  std::vector<std::pair<std::int64_t, std::int64_t>> out;  // (word position, object index)
  std::vector<bool> used(target.objects.size(), false);
  for (size_t w = 0; w < words.size(); ++w) {
    for (size_t o = 0; o < target.objects.size(); ++o) {
      if (!used[o] && target.objects[o].word == words[w]) {
        used[o] = true;
        out.emplace_back(static_cast<std::int64_t>(w), static_cast<std::int64_t>(o));
        break;
      }
    }
  }
  return out;
}

struct GroundingSums {
  std::int64_t words = 0;
  double mass = 0, pointing = 0, chance_mass = 0, chance_pointing = 0;
  void add(const torch::Tensor& alpha, const std::array<std::int64_t, 4>& box, std::int64_t rows,
           std::int64_t columns, std::int64_t stride) {
    const auto [m, hit] = box_attention(alpha, rows, columns, stride, box);
    const auto uniform = torch::full({rows * columns}, 1.0f / static_cast<float>(rows * columns));
    const auto [cm, unused] = box_attention(uniform, rows, columns, stride, box);
    (void)unused;
    // Uniform attention has no argmax: its pointing chance is the share of cells
    // whose centre is in the box (a cell picked at random).
    std::int64_t inside = 0;
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t c = 0; c < columns; ++c) {
        const double cx = (static_cast<double>(c) + 0.5) * static_cast<double>(stride);
        const double cy = (static_cast<double>(r) + 0.5) * static_cast<double>(stride);
        if (cx >= static_cast<double>(box[0]) && cx < static_cast<double>(box[0] + box[2]) &&
            cy >= static_cast<double>(box[1]) && cy < static_cast<double>(box[1] + box[3])) {
          ++inside;
        }
      }
    }
    ++words;
    mass += m;
    pointing += hit ? 1.0 : 0.0;
    chance_mass += cm;
    chance_pointing += static_cast<double>(inside) / static_cast<double>(rows * columns);
  }
  GroundingScores scores() const {
    GroundingScores s;
    s.words = words;
    if (words == 0) return s;
    const auto n = static_cast<double>(words);
    s.mass = mass / n;
    s.pointing = pointing / n;
    s.chance_mass = chance_mass / n;
    s.chance_pointing = chance_pointing / n;
    return s;
  }
};

bool is_article(const std::string& w) { return w == "a" || w == "an" || w == "the"; }

}  // namespace

std::pair<double, bool> box_attention(const torch::Tensor& alpha, std::int64_t rows, std::int64_t columns,
                                      std::int64_t stride, const std::array<std::int64_t, 4>& box) {
  TORCH_CHECK(alpha.dim() == 1 && alpha.size(0) == rows * columns, "box_attention: expected alpha [", rows * columns,
              "], got ", alpha.sizes());
  const auto a = alpha.to(torch::kFloat64).contiguous();
  const auto* p = a.data_ptr<double>();
  const double bx0 = static_cast<double>(box[0]), by0 = static_cast<double>(box[1]);
  const double bx1 = bx0 + static_cast<double>(box[2]), by1 = by0 + static_cast<double>(box[3]);
  const double s = static_cast<double>(stride);
  double mass = 0;
  std::int64_t best = 0;
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < columns; ++c) {
      const auto i = r * columns + c;
      if (p[i] > p[best]) best = i;
      const double ox = std::max(0.0, std::min(bx1, (c + 1) * s) - std::max(bx0, c * s));
      const double oy = std::max(0.0, std::min(by1, (r + 1) * s) - std::max(by0, r * s));
      mass += p[i] * ox * oy / (s * s);
    }
  }
  const double cx = (static_cast<double>(best % columns) + 0.5) * s;
  const double cy = (static_cast<double>(best / columns) + 0.5) * s;
  return {mass, cx >= bx0 && cx < bx1 && cy >= by0 && cy < by1};
}

ParsedCaption parse_scene_caption(const std::vector<std::string>& tokens,
                                  const std::vector<std::string>& object_words) {
  const std::set<std::string> names(object_words.begin(), object_words.end());
  ParsedCaption out;
  // Segments joined by "and"; in each, the object word and what follows "at the".
  std::vector<std::vector<std::string>> segments(1);
  for (const auto& t : tokens) {
    if (t == "and") segments.emplace_back();
    else segments.back().push_back(t);
  }
  for (const auto& seg : segments) {
    for (size_t i = 0; i < seg.size(); ++i) {
      if (!names.count(seg[i])) continue;
      out.objects.push_back(seg[i]);
      std::string place;
      for (size_t j = i + 1; j < seg.size(); ++j) {
        if (names.count(seg[j])) break;
        if (seg[j] == "at") {
          for (size_t k = j + 1; k < seg.size() && !names.count(seg[k]); ++k) {
            if (is_article(seg[k]) && place.empty()) continue;
            place += (place.empty() ? "" : " ") + seg[k];
          }
          break;
        }
      }
      out.places.push_back(place);
    }
  }
  // Two objects in one segment: "a X to the left of a Y", "a X above a Y".
  if (segments.size() == 1 && out.objects.size() == 2) {
    std::string predicate;
    for (const auto& t : segments[0]) {
      if (t == "left" || t == "right") predicate = t + " of";
      if (t == "above" || t == "below") predicate = t;
    }
    if (!predicate.empty()) out.relation = ds::RelationTriple{out.objects[0], predicate, out.objects[1]};
  }
  return out;
}

const std::vector<std::string>& training_reference(const ds::CaptionTarget& target, std::int64_t index,
                                                   std::uint64_t seed, std::int64_t epoch,
                                                   CaptionReferences references) {
  TORCH_CHECK(!target.references.empty(), "captioner: training image ", target.name, " has no caption");
  if (references == CaptionReferences::kFirst) return target.references.front();
  const auto epoch_key = ds::stream_key(seed, kReferenceStream, static_cast<std::uint64_t>(epoch));
  ds::Rng rng(ds::stream_key(epoch_key, static_cast<std::uint64_t>(index)));
  return target.references[static_cast<size_t>(rng.uniform_int(static_cast<std::int64_t>(target.references.size())))];
}

FitSummary train_captioner(CaptionModel& model, const ds::CaptionSource& train, const ds::CaptionSource* validation,
                           const TrainOptions& options, const CaptionTrainOptions& captioning,
                           const nlohmann::json& data,
                           TrainingObserver* observer, const std::atomic<bool>* stop, FitHooks hooks) {
  options.validate();
  check_fits(model, train, "training");
  if (validation != nullptr) check_fits(model, *validation, "validation");
  auto optimizer = make_optimizer(model.module().parameters(), options);
  seed_model_generators(model, options.seed(), hooks);
  CheckpointInfo description;
  description.model = {model.kind(), model.options()};
  description.training = options.to_json();
  description.training["monitor"] = enum_name(captioning.monitor());
  description.training["references"] = enum_name(captioning.references());
  description.data = data.is_null() ? nlohmann::json::object() : data;

  std::int64_t order_epoch = -1;
  std::vector<std::int64_t> order;
  auto& net = *model.net;
  auto loss = [&](const StepContext& c) -> StepLoss {
    for (auto& group : optimizer->param_groups()) group.options().set_lr(scheduled_lr(options, c.epoch));
    if (order_epoch != c.epoch) {
      order = ds::epoch_order(train.size(), options.seed(), c.epoch);
      order_epoch = c.epoch;
    }
    const auto indices = shard_batch(hooks, ds::order_batch(order, options.batch_size(), c.step_in_epoch));
    const auto items = train.get(indices, c.epoch);
    std::vector<std::vector<std::string>> chosen;
    for (size_t i = 0; i < items.targets.size(); ++i) {
      chosen.push_back(
          training_reference(items.targets[i], indices[i], options.seed(), c.epoch, captioning.references()));
    }
    const auto batch = ds::make_caption_batch(model.vocabulary(), chosen, model.max_length());
    auto l = net.loss(items.images, batch.tokens, batch.lengths);
    Metrics metrics{{"xent", l.cross_entropy.item<double>()}, {"reg", l.doubly_stochastic.item<double>()}};
    if (net.options.attention() == CaptionAttention::kHard) {
      metrics["reinforce"] = l.reinforce.item<double>();
      metrics["entropy"] = l.entropy.item<double>();
    }
    // The loss and its metrics are means over words: data-parallel ranks weigh by them.
    return {l.total, static_cast<std::int64_t>(indices.size()), metrics, l.words};
  };
  EvalFn eval;
  if (validation != nullptr) {
    eval = [&](std::int64_t) {
      const auto e = evaluate_captioner(model, *validation, CaptionEvalOptions().beam(1).teacher_forced_grounding(false));
      Metrics m{{"cider", e.scores.cider_d}, {"bleu4", e.scores.bleu[3]}};
      if (e.has_objects) m["exact"] = e.exact_match;
      return m;
    };
  }
  const auto steps = (train.size() + options.batch_size() - 1) / options.batch_size();
  auto fit_options = FitOptions()
                         .epochs(options.epochs())
                         .steps_per_epoch(steps)
                         .run_dir(options.run_dir())
                         .resume(options.resume())
                         .checkpoint_every(options.checkpoint_every())
                         .monitor(validation != nullptr ? enum_name(captioning.monitor()) : "")
                         .maximize(true)
                         .patience(validation != nullptr ? options.patience() : 0)
                         .clip_norm(options.clip_norm())
                         .skip_nonfinite(options.skip_nonfinite());
  return fit(model.module(), *optimizer, description, fit_options, loss, eval, observer, stop, hooks);
}

CaptionEvaluation evaluate_captioner(CaptionModel& model, const ds::CaptionSource& source,
                                     const CaptionEvalOptions& options) {
  TORCH_CHECK(options.batch_size() >= 1, "evaluate: batch size must be >= 1");
  check_fits(model, source, "evaluation");
  const auto start = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  ModeGuard evaluating(model.module(), false);
  auto& net = *model.net;
  const auto [rows, columns] = model.grid();
  const auto stride = net.stride();
  const bool attends = net.options.attention() != CaptionAttention::kNone;

  CaptionEvaluation e;
  std::vector<std::vector<std::vector<std::string>>> references;
  std::vector<ds::CaptionTarget> targets;
  GroundingSums generated, forced;
  std::set<std::string> object_words;
  for (std::int64_t begin = 0; begin < source.size(); begin += options.batch_size()) {
    const auto items =
        source.get(range_indices(begin, std::min(source.size(), begin + options.batch_size())), 0);
    // Encoded once for decoding and teacher forcing.
    const auto annotations = net.encode(items.images);
    auto decoded = model.caption_encoded(annotations, BeamSearchOptions()
                                                          .beam(options.beam())
                                                          .length_penalty(options.length_penalty())
                                                          .max_length(model.max_length() - 1));
    for (size_t i = 0; i < decoded.size(); ++i) {
      const auto& t = items.targets[i];
      TORCH_CHECK(!t.references.empty(), "evaluate: image ", t.name, " has no reference caption");
      for (const auto& ob : t.objects) object_words.insert(ob.word);
      auto words = model.words(decoded[i]);
      if (attends && decoded[i].alphas.defined()) {
        for (const auto& [w, o] : matched_objects(words, t)) {
          generated.add(decoded[i].alphas[w], t.objects[static_cast<size_t>(o)].bbox, rows, columns, stride);
        }
      }
      e.names.push_back(t.name);
      e.captions.push_back(words);
      e.decoded.push_back(std::move(decoded[i]));
      references.push_back(t.references);
      targets.push_back(t);
    }
    if (options.teacher_forced_grounding() && attends) {
      std::vector<std::vector<std::string>> firsts;
      bool any_objects = false;
      for (const auto& t : items.targets) {
        firsts.push_back(t.references.front());
        any_objects = any_objects || !t.objects.empty();
      }
      if (any_objects) {
        const auto batch = ds::make_caption_batch(model.vocabulary(), firsts, model.max_length());
        const auto out = net.forward_encoded(annotations, batch.tokens);
        for (size_t i = 0; i < items.targets.size(); ++i) {
          // Step t produced token t+1, i.e. word t of the caption.
          const auto length = batch.lengths[static_cast<std::int64_t>(i)].item<std::int64_t>();
          std::vector<std::string> words(firsts[i].begin(),
                                         firsts[i].begin() + std::min<std::int64_t>(length - 2, firsts[i].size()));
          for (const auto& [w, o] : matched_objects(words, items.targets[i])) {
            forced.add(out.alphas[static_cast<std::int64_t>(i)][w], items.targets[i].objects[static_cast<size_t>(o)].bbox,
                       rows, columns, stride);
          }
        }
      }
    }
  }
  e.count = static_cast<std::int64_t>(e.captions.size());
  e.scores = score_captions(e.captions, references);
  std::int64_t exact = 0, objects_right = 0, relation_right = 0, words = 0;
  const std::vector<std::string> names(object_words.begin(), object_words.end());
  for (size_t i = 0; i < e.captions.size(); ++i) {
    const auto& caption = e.captions[i];
    words += static_cast<std::int64_t>(caption.size());
    if (e.decoded[i].finished) ++e.finished;
    if (std::find(references[i].begin(), references[i].end(), caption) != references[i].end()) ++exact;
    const auto& t = targets[i];
    if (t.objects.empty()) continue;
    e.has_objects = true;
    const auto parsed = parse_scene_caption(caption, names);
    auto said = parsed.objects;
    std::vector<std::string> truth;
    for (const auto& ob : t.objects) truth.push_back(ob.word);
    std::sort(said.begin(), said.end());
    std::sort(truth.begin(), truth.end());
    if (said == truth) ++objects_right;
    ++e.relation_count;
    if (t.relation) {
      const ds::RelationTriple true_relation{t.objects[static_cast<size_t>(t.relation->subject)].word,
                                             t.relation->predicate,
                                             t.objects[static_cast<size_t>(t.relation->object)].word};
      if (parsed.relation && parsed.relation->canonical() == true_relation.canonical()) ++relation_right;
    } else {
      // Each object's place as the first reference gives it.
      const auto expected = parse_scene_caption(t.references.front(), names);
      std::vector<std::pair<std::string, std::string>> a, b;
      for (size_t k = 0; k < parsed.objects.size(); ++k) a.emplace_back(parsed.objects[k], parsed.places[k]);
      for (size_t k = 0; k < expected.objects.size(); ++k) b.emplace_back(expected.objects[k], expected.places[k]);
      std::sort(a.begin(), a.end());
      std::sort(b.begin(), b.end());
      if (a == b) ++relation_right;
    }
  }
  const auto n = static_cast<double>(std::max<std::int64_t>(1, e.count));
  e.exact_match = static_cast<double>(exact) / n;
  e.mean_length = static_cast<double>(words) / n;
  if (e.has_objects) {
    e.object_accuracy = static_cast<double>(objects_right) / n;
    e.relation_accuracy =
        e.relation_count > 0 ? static_cast<double>(relation_right) / static_cast<double>(e.relation_count) : 0.0;
  }
  e.generated = generated.scores();
  e.teacher_forced = forced.scores();
  e.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return e;
}

InterventionResult attention_intervention(CaptionModel& model, const ds::CaptionSource& source,
                                          std::int64_t batch_size) {
  TORCH_CHECK(model.net->options.attention() == CaptionAttention::kSoft,
              "intervention: the model must have soft attention, not ", enum_name(model.net->options.attention()));
  check_fits(model, source, "evaluation");
  torch::NoGradGuard no_grad;
  ModeGuard evaluating(model.module(), false);
  auto& net = *model.net;
  const auto& vocab = model.vocabulary();
  InterventionResult r;
  std::int64_t second = 0, first = 0, uniform_second = 0, uniform_first = 0;
  for (std::int64_t begin = 0; begin < source.size(); begin += batch_size) {
    const auto items = source.get(range_indices(begin, std::min(source.size(), begin + batch_size)), 0);
    const auto decoded = model.caption(items.images, BeamSearchOptions().beam(1).max_length(model.max_length() - 1));
    for (size_t i = 0; i < decoded.size(); ++i) {
      const auto words = model.words(decoded[i]);
      const auto matched = matched_objects(words, items.targets[i]);
      if (matched.size() < 2 || !decoded[i].alphas.defined()) continue;
      const auto [t1, o1] = matched[0];
      const auto [t2, o2] = matched[1];
      const auto image = items.images.narrow(0, static_cast<std::int64_t>(i), 1);
      const auto annotations = net.encode(image);
      const auto projected = net.attention->project_keys(annotations);
      // Replay the caption's prefix, then step t1 with the replaced map.
      auto [h, c] = net.initial_state(annotations);
      auto token = torch::full({1}, ds::Vocabulary::kStart, torch::kInt64);
      for (std::int64_t t = 0; t < t1; ++t) {
        const auto s = net.step(annotations, projected, token, h, c);
        h = s.h;
        c = s.c;
        token = torch::full({1}, decoded[i].tokens[static_cast<size_t>(t)], torch::kInt64);
      }
      const auto n = annotations.size(1);
      auto said = [&](const torch::Tensor& alpha) {
        const auto s = net.step(annotations, projected, token, h, c, alpha.view({1, n}));
        return vocab.word(s.logits.argmax(1).item<std::int64_t>());
      };
      const auto& w1 = items.targets[i].objects[static_cast<size_t>(o1)].word;
      const auto& w2 = items.targets[i].objects[static_cast<size_t>(o2)].word;
      const auto moved = said(decoded[i].alphas[t2]);
      const auto flat = said(torch::full({n}, 1.0f / static_cast<float>(n)));
      ++r.images;
      second += moved == w2;
      first += moved == w1;
      uniform_second += flat == w2;
      uniform_first += flat == w1;
    }
  }
  if (r.images > 0) {
    const auto n = static_cast<double>(r.images);
    r.says_second = static_cast<double>(second) / n;
    r.says_first = static_cast<double>(first) / n;
    r.uniform_says_second = static_cast<double>(uniform_second) / n;
    r.uniform_says_first = static_cast<double>(uniform_first) / n;
  }
  return r;
}

nlohmann::json to_json(const CaptionEvaluation& e, bool per_image) {
  auto grounding = [](const GroundingScores& g) {
    return nlohmann::json{{"words", g.words},
                          {"mass", g.mass},
                          {"pointing", g.pointing},
                          {"chance_mass", g.chance_mass},
                          {"chance_pointing", g.chance_pointing}};
  };
  nlohmann::json j = {{"count", e.count},
                      {"bleu1", e.scores.bleu[0]},
                      {"bleu2", e.scores.bleu[1]},
                      {"bleu3", e.scores.bleu[2]},
                      {"bleu4", e.scores.bleu[3]},
                      {"rouge_l", e.scores.rouge_l},
                      {"cider_d", e.scores.cider_d},
                      {"exact_match", e.exact_match},
                      {"finished", e.finished},
                      {"mean_length", e.mean_length},
                      {"seconds", e.seconds}};
  if (e.has_objects) {
    j["object_accuracy"] = e.object_accuracy;
    j["relation_accuracy"] = e.relation_accuracy;
    j["grounding"] = {{"generated", grounding(e.generated)}, {"teacher_forced", grounding(e.teacher_forced)}};
  }
  if (per_image) {
    auto list = nlohmann::json::array();
    for (size_t i = 0; i < e.captions.size(); ++i) {
      std::string sentence;
      for (const auto& w : e.captions[i]) sentence += (sentence.empty() ? "" : " ") + w;
      list.push_back({{"image", e.names[i]}, {"caption", sentence}});
    }
    j["captions"] = list;
  }
  return j;
}

}  // namespace attend::models
