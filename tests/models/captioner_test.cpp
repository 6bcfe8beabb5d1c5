#include <attend/models/captioner.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <gtest/gtest.h>

namespace am = attend::models;

namespace {

am::CaptionerOptions small_options() {
  return am::CaptionerOptions(12).encoder_filters({4, 6}).embed_size(8).hidden_size(16).attention_size(10).dropout(0.0);
}

/// A padded batch: image b's caption has lengths[b] tokens (<start> ... <end>), the
/// rest <pad> (0).
torch::Tensor tokens_for(const std::vector<std::int64_t>& lengths, std::int64_t t) {
  auto tokens = torch::zeros({static_cast<std::int64_t>(lengths.size()), t}, torch::kInt64);
  for (size_t b = 0; b < lengths.size(); ++b) {
    tokens[static_cast<std::int64_t>(b)][0] = 1;
    for (std::int64_t i = 1; i + 1 < lengths[b]; ++i) tokens[static_cast<std::int64_t>(b)][i] = static_cast<std::int64_t>(4 + (i + static_cast<std::int64_t>(b)) % 8);
    tokens[static_cast<std::int64_t>(b)][lengths[b] - 1] = 2;
  }
  return tokens;
}

}  // namespace

// Attention weights are distributions over the grid's cells (stride 4: 16x12 -> 4x3),
// the gate lies in (0,1), and the logits cover the vocabulary.
TEST(Captioner, TeacherForcingGivesDistributionsOverTheGrid) {
  torch::manual_seed(0);
  am::Captioner model(small_options());
  const auto images = torch::rand({2, 1, 16, 12});
  const auto out = model->forward(images, tokens_for({5, 3}, 6));
  EXPECT_EQ(model->grid(16, 12), (std::pair<std::int64_t, std::int64_t>{4, 3}));
  ASSERT_EQ(out.logits.sizes(), (std::vector<std::int64_t>{2, 5, 12}));
  ASSERT_EQ(out.alphas.sizes(), (std::vector<std::int64_t>{2, 5, 12}));
  EXPECT_TRUE(torch::allclose(out.alphas.sum(2), torch::ones({2, 5}), 1e-5, 1e-6));
  EXPECT_GT(out.betas.min().item<float>(), 0.0f);
  EXPECT_LT(out.betas.max().item<float>(), 1.0f);
  // Without the gate beta is exactly 1, and there is no f_beta parameter.
  am::Captioner plain(small_options().gate(false).deep_output(false).init_from_mean(false));
  EXPECT_TRUE(torch::equal(plain->forward(images, tokens_for({5, 3}, 6)).betas, torch::ones({2, 5})));
  EXPECT_LT(plain->parameters().size(), model->parameters().size());
  // Uniform attention: every weight 1/N.
  am::Captioner uniform(small_options().attention(am::CaptionAttention::kUniform));
  EXPECT_TRUE(torch::allclose(uniform->forward(images, tokens_for({5, 3}, 6)).alphas, torch::full({2, 5, 12}, 1.0 / 12)));
}

// The loss is the paper's per-caption loss, sum_t -log p(y_t) + lambda * sum_i (1 -
// sum_t alpha_ti)^2 over the caption's steps, summed over the batch and divided by the
// number of words; what lies past a caption's end changes nothing.
TEST(Captioner, LossMasksPaddingAndAddsTheDoublyStochasticTerm) {
  torch::manual_seed(1);
  am::Captioner model(small_options().doubly_stochastic(0.7));
  const auto images = torch::rand({3, 1, 8, 8});
  const std::vector<std::int64_t> lengths{6, 3, 4};
  auto tokens = tokens_for(lengths, 7);
  const auto lengths_t = torch::tensor(lengths, torch::kInt64);
  const auto l = model->loss(images, tokens, lengths_t);
  EXPECT_EQ(l.words, 5 + 2 + 3);
  // Reference, image by image with plain loops.
  const auto out = model->forward(images, tokens);
  double ce = 0, reg = 0;
  for (std::int64_t b = 0; b < 3; ++b) {
    const auto log_probs = torch::log_softmax(out.logits[b], 1);
    auto sum_alpha = torch::zeros({out.alphas.size(2)});
    for (std::int64_t t = 0; t + 1 < lengths[static_cast<size_t>(b)]; ++t) {
      ce -= log_probs[t][tokens[b][t + 1].item<std::int64_t>()].item<double>();
      sum_alpha += out.alphas[b][t];
    }
    reg += (1 - sum_alpha).pow(2).sum().item<double>();
  }
  EXPECT_NEAR(l.cross_entropy.item<double>(), ce / 10, 1e-5);
  EXPECT_NEAR(l.doubly_stochastic.item<double>(), 0.7 * reg / 10, 1e-5);
  EXPECT_NEAR(l.total.item<double>(), (ce + 0.7 * reg) / 10, 1e-5);
  // Padding replaced by other words: the same loss.
  auto noisy = tokens.clone();
  noisy[1][4] = 9;
  noisy[1][5] = 7;
  noisy[2][6] = 5;
  EXPECT_NEAR(model->loss(images, noisy, lengths_t).total.item<double>(), l.total.item<double>(), 1e-6);
  // Gradients reach the attention through the regulariser alone.
  model->zero_grad();
  l.doubly_stochastic.backward();
  EXPECT_GT(model->attention->v.grad().abs().sum().item<double>(), 0.0);
  EXPECT_THROW(model->loss(images, tokens, torch::tensor({6, 1, 4}, torch::kInt64)), c10::Error);
  EXPECT_THROW(model->forward(images, torch::full({3, 4}, 12, torch::kInt64)), c10::Error);
}

// Greedy decoding (beam 1) equals a plain reference: feed the prefix through teacher
// forcing and take the argmax of the last step, word by word.
TEST(Captioner, GreedyDecodingEqualsArgmaxOfTeacherForcing) {
  torch::manual_seed(2);
  am::Captioner model(small_options());
  model->eval();
  const auto images = torch::rand({2, 1, 8, 8});
  const auto decoded = model->decode(images, am::BeamSearchOptions().beam(1).max_length(6));
  for (std::int64_t b = 0; b < 2; ++b) {
    std::vector<std::int64_t> prefix{1}, words;
    std::vector<torch::Tensor> alphas;
    for (int t = 0; t < 6; ++t) {
      auto input = prefix;
      input.push_back(0);  // a placeholder: the step that reads it is not used
      const auto out = model->forward(images.narrow(0, b, 1), torch::tensor(input).unsqueeze(0));
      const auto next = out.logits[0][t].argmax().item<std::int64_t>();
      alphas.push_back(out.alphas[0][t]);
      if (next == 2) break;
      words.push_back(next);
      prefix.push_back(next);
    }
    const auto& caption = decoded[static_cast<size_t>(b)];
    EXPECT_EQ(caption.tokens, words) << "image " << b;
    ASSERT_EQ(caption.alphas.size(0), static_cast<std::int64_t>(words.size()));
    for (size_t t = 0; t < words.size(); ++t) {
      EXPECT_TRUE(torch::allclose(caption.alphas[static_cast<std::int64_t>(t)], alphas[t], 1e-4, 1e-6));
    }
  }
}

// Batched beam search over several images equals searching each image alone.
TEST(Captioner, BatchedBeamSearchEqualsOneImageAtATime) {
  torch::manual_seed(3);
  am::Captioner model(small_options());
  const auto images = torch::rand({4, 1, 8, 8});
  const auto search = am::BeamSearchOptions().beam(3).max_length(7);
  const auto together = model->decode(images, search);
  EXPECT_TRUE(model->is_training()) << "decode restores the mode";
  for (std::int64_t b = 0; b < 4; ++b) {
    const auto alone = model->decode(images.narrow(0, b, 1), search);
    EXPECT_EQ(together[static_cast<size_t>(b)].tokens, alone[0].tokens) << b;
    EXPECT_NEAR(together[static_cast<size_t>(b)].log_prob, alone[0].log_prob, 1e-4) << b;
  }
}

// One encoding can serve teacher forcing and decoding (evaluation encodes once): from
// annotations, both give exactly what they give from the images; annotations of the
// wrong rank are refused.
TEST(Captioner, EncodedOnceGivesWhatTheImagesGive) {
  torch::manual_seed(4);
  am::Captioner model(small_options());
  model->eval();
  torch::NoGradGuard no_grad;
  const auto images = torch::rand({3, 1, 8, 12});
  const auto tokens = tokens_for({5, 3, 4}, 6);
  const auto annotations = model->encode(images);
  const auto direct = model->forward(images, tokens);
  const auto encoded = model->forward_encoded(annotations, tokens);
  EXPECT_TRUE(torch::equal(direct.logits, encoded.logits));
  EXPECT_TRUE(torch::equal(direct.alphas, encoded.alphas));
  const auto search = am::BeamSearchOptions().beam(2).max_length(5);
  const auto a = model->decode(images, search);
  const auto b = model->decode_encoded(annotations, search);
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].tokens, b[i].tokens) << i;
    EXPECT_EQ(a[i].log_prob, b[i].log_prob) << i;
    EXPECT_TRUE(torch::equal(a[i].alphas, b[i].alphas)) << i;
  }
  EXPECT_THROW(model->forward_encoded(images, tokens), c10::Error);
  EXPECT_THROW(model->decode_encoded(images, search), c10::Error);
  EXPECT_THROW(model->forward_encoded(annotations, tokens.narrow(0, 0, 2)), c10::Error);
}

// A few hundred steps on one caption per image make the model say it: the parts are
// wired so that learning happens (and greedy decoding reads what was learnt).
TEST(Captioner, LearnsToSayWhatItIsTaught) {
  torch::manual_seed(4);
  am::Captioner model(small_options().doubly_stochastic(0.0));
  auto images = torch::zeros({2, 1, 8, 8});
  images[0].narrow(2, 0, 4).fill_(1.0);  // left half bright
  images[1].narrow(2, 4, 4).fill_(1.0);  // right half bright
  const auto tokens = torch::tensor({{1, 5, 6, 2}, {1, 7, 8, 2}}, torch::kInt64);
  const auto lengths = torch::tensor({4, 4}, torch::kInt64);
  torch::optim::Adam adam(model->parameters(), 1e-2);
  for (int i = 0; i < 150; ++i) {
    adam.zero_grad();
    model->loss(images, tokens, lengths).total.backward();
    adam.step();
  }
  const auto decoded = model->decode(images, am::BeamSearchOptions().beam(2).max_length(5));
  EXPECT_EQ(decoded[0].tokens, (std::vector<std::int64_t>{5, 6}));
  EXPECT_EQ(decoded[1].tokens, (std::vector<std::int64_t>{7, 8}));
  EXPECT_TRUE(decoded[0].finished);
}

TEST(Captioner, OptionsRoundTripAndRefuseNonsense) {
  const auto o = small_options().gate(false).attention(am::CaptionAttention::kUniform).doubly_stochastic(0.3);
  EXPECT_EQ(am::CaptionerOptions::from_json(o.to_json()).to_json(), o.to_json());
  EXPECT_THROW(am::CaptionerOptions(3).validate(), c10::Error);
  EXPECT_THROW(small_options().dropout(1.0).validate(), c10::Error);
  EXPECT_THROW(small_options().channels(2).validate(), c10::Error);
  auto j = o.to_json();
  j.erase("gate");
  EXPECT_THROW(am::CaptionerOptions::from_json(j), c10::Error);
}

// Hard attention: in training each word reads one cell drawn from alpha (the draws
// follow the sampler's seed), the REINFORCE term is -sum_b (R_b - b) sum_t log
// alpha(s_bt) / words with R_b the caption's log-likelihood, and its gradient reaches
// the attention's parameters; in evaluation the argmax cell is read, deterministically.
TEST(Captioner, HardAttentionSamplesCellsAndLearnsThemByReinforce) {
  torch::manual_seed(5);
  am::Captioner model(small_options().attention(am::CaptionAttention::kHard).entropy(0.0).baseline_decay(0.5));
  const auto images = torch::rand({3, 1, 8, 8});
  const std::vector<std::int64_t> lengths{5, 3, 4};
  const auto tokens = tokens_for(lengths, 5);
  const auto lengths_t = torch::tensor(lengths, torch::kInt64);
  model->sampler = at::make_generator<at::CPUGeneratorImpl>(11);
  const auto first = model->forward(images, tokens);
  ASSERT_TRUE(first.location_log_probs.defined());
  ASSERT_EQ(first.location_log_probs.sizes(), (std::vector<std::int64_t>{3, 4}));
  model->sampler = at::make_generator<at::CPUGeneratorImpl>(11);
  const auto again = model->forward(images, tokens);
  EXPECT_TRUE(torch::equal(first.logits, again.logits));  // same draws, same words

  // The REINFORCE term by hand, from the same draws. The first batch's baseline is its
  // own mean reward.
  model->sampler = at::make_generator<at::CPUGeneratorImpl>(12);
  const auto out = model->forward(images, tokens);
  model->sampler = at::make_generator<at::CPUGeneratorImpl>(12);
  const auto l = model->loss(images, tokens, lengths_t);
  const auto per_word = torch::nn::functional::cross_entropy(
      out.logits.reshape({-1, 12}), tokens.narrow(1, 1, 4).reshape({-1}),
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone)).view({3, 4});
  const auto valid = (torch::arange(4).unsqueeze(0) < (lengths_t - 1).unsqueeze(1)).to(torch::kFloat32);
  const auto reward = -(per_word * valid).sum(1);
  const auto expected = -((reward - reward.mean()).unsqueeze(1) * out.location_log_probs * valid).sum() / 9.0;
  EXPECT_NEAR(l.reinforce.item<double>(), expected.item<double>(), 1e-5);
  EXPECT_NEAR(model->reward_baseline[0].item<double>(), reward.mean().item<double>(), 1e-5);
  EXPECT_EQ(model->reward_baseline[1].item<double>(), 1.0);
  l.total.backward();
  EXPECT_GT(model->attention->parameters()[0].grad().abs().sum().item<double>(), 0.0);

  // Evaluation: the argmax cell, whatever the sampler.
  model->eval();
  model->sampler = at::make_generator<at::CPUGeneratorImpl>(1);
  const auto a = model->forward(images, tokens).logits;
  model->sampler = at::make_generator<at::CPUGeneratorImpl>(2);
  EXPECT_TRUE(torch::equal(a, model->forward(images, tokens).logits));
}

// Without attention the decoder has no context input and no attention weights; the
// image reaches it only through h_0, c_0, which it therefore requires.
TEST(Captioner, NoAttentionUsesTheImageOnlyThroughTheInitialState) {
  torch::manual_seed(6);
  am::Captioner model(small_options().attention(am::CaptionAttention::kNone));
  const auto images = torch::rand({2, 1, 8, 8});
  const auto out = model->forward(images, tokens_for({4, 3}, 4));
  EXPECT_FALSE(out.alphas.defined());
  EXPECT_TRUE(torch::equal(out.betas, torch::ones({2, 3})));
  EXPECT_EQ(model->lstm->options.input_size(), 8);  // the embedding alone
  const auto decoded = model->decode(images, am::BeamSearchOptions().beam(2).max_length(3));
  EXPECT_FALSE(decoded[0].alphas.defined());
  EXPECT_THROW(am::Captioner(small_options().attention(am::CaptionAttention::kNone).init_from_mean(false)), c10::Error);
}

// With `word_query`, the attention of step t looks with h_{t-1} and the word read at
// step t, so alpha_t changes with tokens[:, t]; without it, alpha_t depends only on the
// earlier tokens. The options survive their JSON (checkpoints), and JSON written before
// the option existed reads as without it.
TEST(Captioner, WordQueryLetsTheWordJustReadSteerAttention) {
  const auto images = torch::rand({2, 1, 16, 12});
  auto tokens = tokens_for({6, 6}, 6);
  auto changed = tokens.clone();
  changed.select(1, 2).add_(1);  // the word read at step 2
  for (const bool word : {false, true}) {
    torch::manual_seed(3);
    am::Captioner model(small_options().word_query(word));
    model->eval();
    EXPECT_EQ(model->attention->options.query_size(), 16 + (word ? 8 : 0));
    torch::NoGradGuard no_grad;
    const auto a = model->forward(images, tokens).alphas, b = model->forward(images, changed).alphas;
    EXPECT_TRUE(torch::equal(a.narrow(1, 0, 2), b.narrow(1, 0, 2)));
    EXPECT_EQ(torch::equal(a.select(1, 2), b.select(1, 2)), !word) << "word_query " << word;
  }
  const auto options = small_options().word_query(true);
  EXPECT_TRUE(am::CaptionerOptions::from_json(options.to_json()).word_query());
  auto old = options.to_json();
  old.erase("word_query");
  EXPECT_FALSE(am::CaptionerOptions::from_json(old).word_query());
}

// With `deep_output_tanh` the output layer reads tanh(E y + L_h h + L_z z): with L_o
// the identity on the first 8 words, those logits are the tanh of the plain model's
// (the same parameters otherwise, so the same h and z at every step).
TEST(Captioner, DeepOutputTanhIsTheTanhOfTheSum) {
  const auto images = torch::rand({2, 1, 16, 12});
  const auto tokens = tokens_for({6, 5}, 6);
  std::vector<torch::Tensor> logits;
  for (const bool tanh : {false, true}) {
    torch::manual_seed(5);
    am::Captioner model(small_options().deep_output_tanh(tanh));
    model->eval();
    torch::NoGradGuard no_grad;
    model->out_words->weight.zero_();
    model->out_words->weight.narrow(0, 0, 8).copy_(torch::eye(8));
    model->out_words->bias.zero_();
    logits.push_back(model->forward(images, tokens).logits.narrow(2, 0, 8));
  }
  EXPECT_GT(logits[0].abs().max().item<double>(), 0.1) << "the sums are not all near 0";
  EXPECT_TRUE(torch::allclose(logits[1], torch::tanh(logits[0]), 1e-5, 1e-6));
  EXPECT_THROW(am::Captioner(small_options().deep_output(false).deep_output_tanh(true)), c10::Error);
  auto old = small_options().to_json();
  old.erase("deep_output_tanh");
  EXPECT_FALSE(am::CaptionerOptions::from_json(old).deep_output_tanh()) << "checkpoints from before the option";
}

// With `position`, each annotation ends with its cell's centre in [-1,1] (x, y), in
// reading order, after the encoder's features, which are unchanged.
TEST(Captioner, PositionAppendsEachCellsCentre) {
  torch::manual_seed(7);
  am::Captioner plain(small_options());
  torch::manual_seed(7);
  am::Captioner placed(small_options().position(true));
  const auto images = torch::rand({2, 1, 16, 8});  // grid 4 rows x 2 columns
  const auto a = plain->encode(images), b = placed->encode(images);
  ASSERT_EQ(b.sizes(), (std::vector<std::int64_t>{2, 8, 6 + 2}));
  EXPECT_TRUE(torch::equal(b.narrow(2, 0, 6), a));
  const auto expected = torch::tensor({{-0.5f, -0.75f}, {0.5f, -0.75f}, {-0.5f, -0.25f}, {0.5f, -0.25f},
                                       {-0.5f, 0.25f},  {0.5f, 0.25f},  {-0.5f, 0.75f}, {0.5f, 0.75f}});
  EXPECT_TRUE(torch::allclose(b[1].narrow(1, 6, 2), expected));
  EXPECT_EQ(placed->lstm->options.input_size(), 8 + 6 + 2);
}
