#include <attend/io_error.h>
#include <attend/models/caption_train.h>
#include <attend/models/checkpoint.h>
#include <attend/models/caption_model.h>
#include <attend/models/registry.h>
#include <attend/models/saliency.h>

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <limits>

#include "caption_support.h"
#include "test_support.h"

namespace am = attend::models;
namespace ds = attend::datasets;
using attend::testing::bar_scene_generator;
using attend::testing::small_captioner_options;
using attend::testing::TempDir;

// Cells of 4 px over an 8x8 image; the box [2,6) x [0,4) covers half of cells 0 and 1.
TEST(CaptionGrounding, BoxMassCountsPartialCellsByArea) {
  const auto alpha = torch::tensor({0.1f, 0.2f, 0.3f, 0.4f});
  auto [mass, hit] = am::box_attention(alpha, 2, 2, 4, {2, 0, 4, 4});
  EXPECT_NEAR(mass, 0.5 * 0.1 + 0.5 * 0.2, 1e-7);
  EXPECT_FALSE(hit);  // the argmax cell (3) has its centre at (6, 6)
  std::tie(mass, hit) = am::box_attention(alpha, 2, 2, 4, {4, 4, 4, 4});
  EXPECT_NEAR(mass, 0.4, 1e-7);
  EXPECT_TRUE(hit);
  // A box over the whole image holds all the mass.
  EXPECT_NEAR(am::box_attention(alpha, 2, 2, 4, {0, 0, 8, 8}).first, 1.0, 1e-7);
  EXPECT_THROW(am::box_attention(torch::ones({3}), 2, 2, 4, {0, 0, 1, 1}), c10::Error);
}

TEST(CaptionGrounding, ParsesObjectsPlacesAndRelations) {
  const std::vector<std::string> names{"3", "7", "8", "1"};
  auto p = am::parse_scene_caption({"a", "3", "to", "the", "left", "of", "an", "8"}, names);
  EXPECT_EQ(p.objects, (std::vector<std::string>{"3", "8"}));
  ASSERT_TRUE(p.relation.has_value());
  EXPECT_EQ(p.relation->str(), ds::RelationTriple({"3", "left of", "8"}).str());
  p = am::parse_scene_caption({"a", "7", "below", "a", "1"}, names);
  ASSERT_TRUE(p.relation.has_value());
  EXPECT_EQ(p.relation->canonical().str(), ds::RelationTriple({"1", "above", "7"}).str());
  p = am::parse_scene_caption({"a", "3", "at", "the", "top", "left", "and", "a", "7", "at", "the", "center"}, names);
  EXPECT_EQ(p.objects, (std::vector<std::string>{"3", "7"}));
  EXPECT_EQ(p.places, (std::vector<std::string>{"top left", "center"}));
  EXPECT_FALSE(p.relation.has_value());
  // Words that name nothing are not objects; a caption without objects parses empty.
  p = am::parse_scene_caption({"a", "the", "left"}, names);
  EXPECT_TRUE(p.objects.empty());
}

// The registry builds a captioner from its options (vocabulary included); a
// checkpoint alone rebuilds the same model, and another kind's checkpoint is refused.
TEST(CaptionModel, CheckpointAloneCaptionsTheSame) {
  TempDir dir;
  torch::manual_seed(0);
  auto built = am::make_model("captioner", small_captioner_options());
  auto& model = dynamic_cast<am::CaptionModel&>(*built);
  EXPECT_EQ(model.options(), small_captioner_options());
  EXPECT_EQ(model.grid(), (std::pair<std::int64_t, std::int64_t>{8, 8}));
  am::CheckpointInfo info;
  info.model = {model.kind(), model.options()};
  am::save_checkpoint(dir.file("c.pt"), info, model.module());
  const auto loaded = am::load_captioner(dir.file("c.pt"));
  const auto images = torch::rand({3, 1, 32, 32});
  const auto a = model.caption(images, am::BeamSearchOptions().beam(2));
  const auto b = loaded->caption(images, am::BeamSearchOptions().beam(2));
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].tokens, b[i].tokens);
    EXPECT_LE(a[i].tokens.size(), static_cast<size_t>(model.max_length() - 2));
  }
  EXPECT_EQ(loaded->vocabulary(), model.vocabulary());

  auto options = small_captioner_options();
  options.erase("vocabulary");
  EXPECT_THROW(am::make_model("captioner", options), c10::Error);
  auto cnn = am::make_classifier("cnn", am::complete_options(am::model_registry().at("cnn"), {}, {1, 28, 28}));
  info.model = {"cnn", cnn->options()};
  am::save_checkpoint(dir.file("cnn.pt"), info, cnn->module());
  try {
    am::load_captioner(dir.file("cnn.pt"));
    FAIL() << "loaded a cnn as a captioner";
  } catch (const attend::IoError& e) {
    EXPECT_NE(std::string(e.what()).find("holds a 'cnn' model, not a captioner"), std::string::npos) << e.what();
  }
}

// Under uniform attention every word's map is 1/N, so the grounding measured on it is
// exactly the chance level printed beside it; scores lie where they must.
TEST(CaptionEvaluation, UniformAttentionGroundsAtChance) {
  torch::manual_seed(1);
  auto built = am::make_model("captioner", small_captioner_options("uniform"));
  auto& model = dynamic_cast<am::CaptionModel&>(*built);
  const ds::SceneCaptionSource test(bar_scene_generator(), ds::ObjectSplit::kTest, 12);
  const auto e = am::evaluate_captioner(model, test, am::CaptionEvalOptions().beam(2).batch_size(5));
  EXPECT_EQ(e.count, 12);
  EXPECT_TRUE(e.has_objects);
  EXPECT_EQ(e.relation_count, 12);
  ASSERT_GT(e.teacher_forced.words, 0);  // two object words per reference
  EXPECT_EQ(e.teacher_forced.words, 24);
  EXPECT_NEAR(e.teacher_forced.mass, e.teacher_forced.chance_mass, 1e-6);
  EXPECT_GT(e.teacher_forced.chance_mass, 0.0);
  EXPECT_LT(e.teacher_forced.chance_mass, 0.5);
  for (double v : {e.exact_match, e.object_accuracy, e.relation_accuracy, e.scores.bleu[3]}) {
    EXPECT_GE(v, 0.0);
    EXPECT_LE(v, 1.0);
  }
  const auto j = am::to_json(e, true);
  EXPECT_EQ(j["captions"].size(), 12u);
  EXPECT_EQ(j["grounding"]["teacher_forced"]["words"], 24);
}

// "first" always trains on the first caption; "random" draws each image's caption per
// epoch from (seed, epoch, index): the same draw again, every reference over the
// epochs, about evenly, and different images drawing independently.
TEST(CaptionTraining, TrainingReferencesAreTheFirstOrADrawPerEpochAndImage) {
  ds::CaptionTarget t;
  t.name = "x.png";
  t.references = {{"a", "b"}, {"c"}, {"d", "e", "f"}};
  std::vector<int> counts(3, 0);
  int differs = 0;
  for (std::int64_t epoch = 0; epoch < 300; ++epoch) {
    EXPECT_EQ(am::training_reference(t, 4, 1, epoch, am::CaptionReferences::kFirst), t.references[0]);
    const auto& r = am::training_reference(t, 4, 1, epoch, am::CaptionReferences::kRandom);
    EXPECT_EQ(&r, &am::training_reference(t, 4, 1, epoch, am::CaptionReferences::kRandom));
    ++counts[static_cast<size_t>(&r - t.references.data())];
    differs += &r != &am::training_reference(t, 5, 1, epoch, am::CaptionReferences::kRandom);
  }
  for (int c : counts) EXPECT_NEAR(c, 100, 30);
  EXPECT_NEAR(differs, 200, 30);  // two independent draws of 3 differ 2/3 of the time
  ds::CaptionTarget none;
  none.name = "empty.png";
  try {
    am::training_reference(none, 0, 1, 0, am::CaptionReferences::kFirst);
    ADD_FAILURE() << "an image without captions was accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("training image empty.png has no caption"), std::string::npos) << e.what();
  }
}

// Two epochs straight equal one epoch, stopped, and resumed for the second: the
// chosen references, the batches and the weights all follow from (seed, epoch, step).
TEST(CaptionTraining, ResumesBitExactlyAndKeepsTheBestOnValidation) {
  TempDir dir;
  const ds::SceneCaptionSource train(bar_scene_generator(), ds::ObjectSplit::kTrain, 24);
  const ds::SceneCaptionSource val(bar_scene_generator(), ds::ObjectSplit::kVal, 6);
  auto run = [&](const std::string& run_dir, std::int64_t epochs) {
    torch::manual_seed(2);
    auto built = am::make_model("captioner", small_captioner_options());
    auto& model = dynamic_cast<am::CaptionModel&>(*built);
    const auto options = am::TrainOptions().epochs(epochs).batch_size(8).lr(3e-3).seed(5).run_dir(run_dir);
    const auto summary = am::train_captioner(model, train, &val, options, am::CaptionTrainOptions());
    return std::make_pair(std::move(built), summary);
  };
  auto [straight, s1] = run(dir.file("straight"), 2);
  EXPECT_EQ(s1.global_step, 6);
  EXPECT_TRUE(std::filesystem::exists(dir.file("straight/best.pt")));
  run(dir.file("resumed"), 1);
  auto [resumed, s2] = run(dir.file("resumed"), 2);
  EXPECT_EQ(s2.global_step, 6);
  const auto a = straight->module().parameters(), b = resumed->module().parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
  const auto info = am::read_checkpoint_info(dir.file("straight/last.pt"));
  EXPECT_EQ(info.training["monitor"], "cider");
  EXPECT_EQ(info.training["references"], "random");
  EXPECT_TRUE(info.state["has_best"].get<bool>()) << info.state.dump();
}

// A user's TorchScript backbone as the encoder: its method or child module gives the
// grid (two stride-2 convolutions: 32x32 -> 8x8, 8 channels), frozen or fine-tuned;
// outputs that are not feature maps, missing files and unknown names are refused
// naming the file.
TEST(CaptionModel, TorchScriptEncoderByMethodOrChildFrozenOrFineTuned) {
  const std::string file = std::string(ATTEND_TEST_DATA) + "/torchscript/backbone.pt";
  auto with_encoder = [&](const std::string& path, const std::string& output, bool fine_tune) {
    auto o = small_captioner_options();
    o["encoder"] = {{"file", path}, {"output", output}, {"fine_tune", fine_tune}};
    return o;
  };
  torch::manual_seed(3);
  auto frozen_model = am::make_model("captioner", with_encoder(file, "features", false));
  auto& frozen = dynamic_cast<am::CaptionModel&>(*frozen_model);
  EXPECT_EQ(frozen.grid(), (std::pair<std::int64_t, std::int64_t>{8, 8}));
  EXPECT_EQ(frozen.net->stride(), 4);
  const auto images = torch::rand({2, 1, 32, 32});
  const auto annotations = frozen.net->encode(images);
  EXPECT_EQ(annotations.sizes(), (std::vector<std::int64_t>{2, 64, 8 + 2}));  // + the cell centres
  torch::manual_seed(3);
  auto child_model = am::make_model("captioner", with_encoder(file, "body", false));
  EXPECT_TRUE(torch::equal(dynamic_cast<am::CaptionModel&>(*child_model).net->encode(images), annotations));

  torch::manual_seed(3);
  auto tuned_model = am::make_model("captioner", with_encoder(file, "features", true));
  auto& tuned = dynamic_cast<am::CaptionModel&>(*tuned_model);
  // Fine-tuning adds the backbone's 6 tensors (body and head) to the trained
  // parameters; frozen, none.
  EXPECT_EQ(tuned.module().parameters().size(), frozen.module().parameters().size() + 6);
  const auto tokens = torch::tensor({{1, 5, 6, 2}, {1, 7, 2, 0}}, torch::kInt64);
  tuned.net->loss(images, tokens, torch::tensor({4, 3}, torch::kInt64)).total.backward();
  for (const auto& p : tuned.module().named_parameters()) {
    if (p.key().rfind("script_encoder_body", 0) == 0) {
      EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0.0) << p.key();
    }
  }
  frozen.net->loss(images, tokens, torch::tensor({4, 3}, torch::kInt64)).total.backward();  // nothing to train there

  auto refused = [&](const nlohmann::json& options, const std::string& message) {
    try {
      am::make_model("captioner", options);
      ADD_FAILURE() << "accepted: " << message;
    } catch (const attend::IoError& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
    }
  };
  refused(with_encoder(file, "forward", false), "gives a 2-D output");
  refused(with_encoder(std::string(ATTEND_TEST_DATA) + "/torchscript/flat.pt", "forward", false), "2-D output");
  refused(with_encoder(file, "nosuch", false), "no method and no child module named 'nosuch'");
  refused(with_encoder("/nonexistent/backbone.pt", "forward", false), "does not exist");
  refused(with_encoder(std::string(ATTEND_TEST_DATA) + "/torchscript/make_encoders.py", "forward", false),
          "not a TorchScript file");
}

// The captioner as a saliency model scores word v by its largest logit along the
// model's own greedy caption: the same as teacher forcing that caption.
TEST(CaptionSaliency, WordScoresAreTheLargestLogitsAlongTheGreedyCaption) {
  torch::manual_seed(11);
  auto built = am::make_model("captioner", small_captioner_options());
  auto& model = dynamic_cast<am::CaptionModel&>(*built);
  model.net->eval();
  const auto images = torch::rand({3, 1, 32, 32});
  const auto captions = model.caption(images, am::BeamSearchOptions().beam(1));
  torch::NoGradGuard no_grad;
  const auto scores = model.net->greedy_word_scores(model.net->encode(images), model.max_length() - 1,
                                                    ds::Vocabulary::kStart, ds::Vocabulary::kEnd);
  ASSERT_EQ(scores.sizes(), (std::vector<std::int64_t>{3, model.vocabulary().size()}));
  for (std::int64_t b = 0; b < 3; ++b) {
    const auto& caption = captions[static_cast<size_t>(b)];
    std::vector<std::int64_t> tokens{ds::Vocabulary::kStart};
    tokens.insert(tokens.end(), caption.tokens.begin(), caption.tokens.end());
    if (caption.finished) tokens.push_back(ds::Vocabulary::kEnd);
    // Steps that predict each token after <start>, plus none past the last one.
    const auto forced = model.net->forward(images.narrow(0, b, 1), torch::tensor(tokens, torch::kInt64).unsqueeze(0));
    const auto expected = std::get<0>(forced.logits[0].max(0));
    // float32 over up to 20 recurrent steps, three images in one batch against one
    // alone (other matrix shapes, other rounding): differences of about 5e-5 occur.
    EXPECT_TRUE(torch::allclose(scores[b], expected, 1e-4, 1e-4))
        << "image " << b << " caption of " << caption.tokens.size() << " tokens, finished " << caption.finished
        << ", largest difference " << (scores[b] - expected).abs().max().item<double>();
    // The greedy caption's words score at least as high as their emitting step's logit.
    for (size_t t = 0; t < caption.tokens.size(); ++t) {
      EXPECT_GE(scores[b][caption.tokens[t]].item<float>(),
                forced.logits[0][static_cast<std::int64_t>(t)][caption.tokens[t]].item<float>() - 1e-4f);
    }
  }
}

// Grad-CAM of a word at an encoder block is the gradient of that word's score with
// respect to the block's output, averaged per channel, weighting the channels.
TEST(CaptionSaliency, GradCamOfAWordDifferentiatesItsScoreAtTheEncoderBlock) {
  torch::manual_seed(12);
  std::shared_ptr<am::CaptionModel> model(
      dynamic_cast<am::CaptionModel*>(am::make_model("captioner", small_captioner_options()).release()));
  model->net->train();
  const auto images = torch::rand({2, 1, 32, 32});
  {
    auto saliency = am::captioner_saliency_model(model, "captioner under test");
    EXPECT_EQ(saliency->layers(), (std::vector<std::string>{"block1", "block2"}));
    EXPECT_EQ(saliency->default_layer(), "block2");
    EXPECT_EQ(saliency->class_names(), model->vocabulary().words());
    for (const auto& p : model->module().parameters()) EXPECT_FALSE(p.requires_grad());
    EXPECT_FALSE(model->net->is_training());

    const auto logits = saliency->logits(images);
    // The special tokens are never explained.
    EXPECT_TRUE(torch::all(logits.narrow(1, 0, 4) == -std::numeric_limits<float>::infinity()).item<bool>());
    const auto top = am::top_classes(logits, 1);
    EXPECT_TRUE(torch::all(top >= 4).item<bool>());

    const auto word = torch::tensor({{5}, {7}}, torch::kInt64);
    const auto maps = am::compute_saliency(*saliency, images, word, am::SaliencyOptions().layers({"block1", "block2"}));
    ASSERT_EQ(maps.raw.size(), 2u);

    // By hand: run the encoder's two blocks, then differentiate word scores.
    auto& enc = *model->net->encoder;
    torch::Tensor block1, block2;
    {
      torch::NoGradGuard no_grad;
      block1 = images;
      for (size_t m = 0; m < 5; ++m) block1 = (enc.begin() + m)->forward(block1);
    }
    block1 = block1.detach().requires_grad_(true);
    block2 = block1;
    for (size_t m = 5; m < 10; ++m) block2 = (enc.begin() + m)->forward(block2);
    auto scores = model->net->greedy_word_scores(model->net->annotations_of(block2), model->max_length() - 1,
                                                 ds::Vocabulary::kStart, ds::Vocabulary::kEnd);
    const auto target = scores.gather(1, word).sum();
    const auto grads = torch::autograd::grad({target}, {block1, block2});
    const auto gradcam = [](const torch::Tensor& a, const torch::Tensor& g) {
      return (g.mean({2, 3}, true) * a).sum(1);
    };
    EXPECT_TRUE(torch::allclose(maps.raw[0].squeeze(1), gradcam(block1.detach(), grads[0]), 1e-4, 1e-6));
    EXPECT_TRUE(torch::allclose(maps.raw[1].squeeze(1), gradcam(block2.detach(), grads[1]), 1e-4, 1e-6));
    EXPECT_GT(maps.raw[1].abs().sum().item<double>(), 0.0);
    EXPECT_TRUE(torch::allclose(maps.logits, logits));

    try {
      saliency->forward(images, {"block3"}, false);
      ADD_FAILURE() << "an unknown layer was accepted";
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what()).find("unknown layer 'block3'"), std::string::npos);
      EXPECT_NE(std::string(e.what()).find("block1, block2"), std::string::npos);
    }
    // CAM needs a GAP + linear head, which a captioner does not have.
    EXPECT_THROW(am::compute_saliency(*saliency, images, word, am::SaliencyOptions().method(am::SaliencyMethod::kCam)),
                 c10::Error);
  }
  // Put back as it was.
  EXPECT_TRUE(model->net->is_training());
  for (const auto& p : model->module().parameters()) EXPECT_TRUE(p.requires_grad());
}
