// TorchScript models as SaliencyModels. Fixtures and golden values come from
// tests/data/torchscript/make_saliency_models.py (Python autograd).
#include <attend/io_error.h>
#include <attend/models/scripted_model.h>

#include <torch/script.h>
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <set>

#include "test_support.h"

namespace am = attend::models;
using attend::testing::contains;
using attend::testing::error_message;

using attend::testing::thrown_message;

namespace {

std::string fixture(const std::string& name) { return std::string(ATTEND_TEST_DATA) + "/torchscript/" + name; }

am::ScriptedModelOptions small(const std::string& name, const std::string& method = "") {
  return am::ScriptedModelOptions(fixture(name)).method(method).probe_height(32).probe_width(32);
}

/// Reference values: buffers of a TorchScript module.
torch::Tensor golden(const std::string& name) {
  static auto module = torch::jit::load(fixture("saliency_golden.pt"));
  return module.attr(name).toTensor();
}

struct RawMaps {
  torch::Tensor gradcam, hirescam;  // [B,h,w]
};

/// Grad-CAM and HiRes-CAM raw maps of `target` from a tracked split, with the
/// gradient of the summed class scores with respect to each activation.
std::vector<RawMaps> raw_maps(const am::SplitForward& split, std::int64_t target) {
  const auto grads = torch::autograd::grad({split.logits.select(1, target).sum()}, split.activations);
  std::vector<RawMaps> out;
  for (size_t i = 0; i < grads.size(); ++i) {
    EXPECT_TRUE(grads[i].defined());
    const auto& a = split.activations[i];
    out.push_back({(grads[i].mean({2, 3}, true) * a).sum(1), (grads[i] * a).sum(1)});
  }
  return out;
}

/// The leaves that would receive a gradient (AccumulateGrad nodes) in t's graph.
int leaves_of(const torch::Tensor& t) {
  std::vector<torch::autograd::Node*> stack{t.grad_fn().get()};
  std::set<torch::autograd::Node*> seen;
  int leaves = 0;
  while (!stack.empty()) {
    auto* node = stack.back();
    stack.pop_back();
    if (node == nullptr || !seen.insert(node).second) continue;
    if (contains(node->name(), "AccumulateGrad")) ++leaves;
    for (const auto& edge : node->next_edges()) stack.push_back(edge.function.get());
  }
  return leaves;
}

void expect_close(const torch::Tensor& actual, const torch::Tensor& expected) {
  ASSERT_EQ(actual.sizes(), expected.sizes());
  EXPECT_TRUE(torch::allclose(actual, expected, 1e-5, 1e-5))
      << "largest difference " << (actual - expected).abs().max().item<double>();
}

}  // namespace

// Form (a): the targets are the children but the last, the default is the last 4-D
// one, and the chained children give forward's logits.
TEST(ScriptedModel, ChildrenFormSplitsAtNamedChildren) {
  auto model = am::open_scripted_model(small("sequential.pt"));
  EXPECT_EQ(model->layers(), (std::vector<std::string>{"conv1", "relu1", "conv2", "relu2", "pool"}));
  EXPECT_EQ(model->default_layer(), "relu2");  // the last map larger than 1x1 (pool's)
  EXPECT_EQ(model->channels(), 3);
  EXPECT_EQ(model->height(), 0);
  EXPECT_EQ(model->width(), 0);
  EXPECT_TRUE(contains(model->describe(), "sequential.pt (children conv1 relu1 conv2 relu2 pool fc)"))
      << model->describe();
  const auto x = golden("input");
  const auto split = model->forward(x, {"relu2", "conv1"}, false);
  expect_close(split.logits, golden("seq_logits"));
  EXPECT_TRUE(torch::equal(split.logits, model->logits(x)));
  ASSERT_EQ(split.activations.size(), 2u);
  EXPECT_EQ(split.activations[0].sizes(), (std::vector<std::int64_t>{2, 6, 16, 16}));
  EXPECT_EQ(split.activations[1].sizes(), (std::vector<std::int64_t>{2, 4, 32, 32}));
  EXPECT_GE(split.activations[0].min().item<float>(), 0.0f);  // after the ReLU
  EXPECT_LT(split.activations[1].min().item<float>(), 0.0f);  // before it
}

// Form (b): targets "1".."n", default "n", the method's logits are forward's.
TEST(ScriptedModel, MethodFormSplitsAtReturnedActivations) {
  auto model = am::open_scripted_model(small("tupled.pt", "forward_with_activations").fixed_size(true));
  EXPECT_EQ(model->layers(), (std::vector<std::string>{"1", "2"}));
  EXPECT_EQ(model->default_layer(), "2");
  EXPECT_EQ(model->height(), 32);
  EXPECT_EQ(model->width(), 32);
  EXPECT_TRUE(contains(model->describe(), "tupled.pt (method forward_with_activations, 2 activations)"))
      << model->describe();
  const auto x = golden("input");
  const auto split = model->forward(x, {"2"}, false);
  expect_close(split.logits, golden("tup_logits"));
  expect_close(model->logits(x), golden("tup_logits"));
  ASSERT_EQ(split.activations.size(), 1u);
  EXPECT_EQ(split.activations[0].sizes(), (std::vector<std::int64_t>{2, 6, 16, 16}));
}

// Tracked, the class score differentiates to the activations, and the Grad-CAM and
// HiRes-CAM raw maps built from them are Python autograd's.
TEST(ScriptedModel, TrackedSplitGivesPythonsGradCamAndHiResCam) {
  const auto x = golden("input");
  auto seq = am::open_scripted_model(small("sequential.pt"));
  const auto split = seq->forward(x, {"conv2", "relu2"}, true);
  EXPECT_TRUE(split.activations[0].requires_grad());
  EXPECT_TRUE(split.activations[0].is_leaf());  // the graph starts at the earliest target
  const auto maps = raw_maps(split, 1);
  expect_close(maps[0].gradcam, golden("seq_gradcam_conv2"));
  expect_close(maps[0].hirescam, golden("seq_hirescam_conv2"));
  expect_close(maps[1].gradcam, golden("seq_gradcam_relu2"));
  expect_close(maps[1].hirescam, golden("seq_hirescam_relu2"));
  // relu2 alone: the same maps.
  const auto alone = raw_maps(seq->forward(x, {"relu2"}, true), 1);
  expect_close(alone[0].gradcam, golden("seq_gradcam_relu2"));
  expect_close(alone[0].hirescam, golden("seq_hirescam_relu2"));
  // The references tell the layers (the ReLU's mask is in conv2's gradient) and the
  // methods apart, by far more than the tolerance.
  EXPECT_GT((golden("seq_gradcam_conv2") - golden("seq_gradcam_relu2")).abs().max().item<double>(), 1e-2);
  EXPECT_GT((golden("tup_gradcam_act2") - golden("tup_hirescam_act2")).abs().max().item<double>(), 1e-2);

  auto tup = am::open_scripted_model(small("tupled.pt", "forward_with_activations"));
  const auto tracked = tup->forward(x, {"2"}, true);
  const auto tmaps = raw_maps(tracked, 1);
  expect_close(tmaps[0].gradcam, golden("tup_gradcam_act2"));
  expect_close(tmaps[0].hirescam, golden("tup_hirescam_act2"));
}

// Untracked, nothing requires grad, even when the caller has grad mode on; no
// parameter ever does.
TEST(ScriptedModel, UntrackedPassAndParametersNeedNoGradients) {
  torch::AutoGradMode on(true);
  const auto x = golden("input");
  auto seq = am::open_scripted_model(small("sequential.pt"));
  auto tup = am::open_scripted_model(small("tupled.pt", "forward_with_activations"));
  for (auto* model : {seq.get(), tup.get()}) {
    const auto split = model->forward(x, {model->default_layer()}, false);
    EXPECT_FALSE(split.logits.requires_grad());
    EXPECT_FALSE(split.activations[0].requires_grad());
    EXPECT_FALSE(model->logits(x).requires_grad());
  }
  for (const auto& name : {"sequential.pt", "tupled.pt"}) {
    // A freshly loaded module's parameters require grad; the opened model's do not, so
    // a tracked pass leaves every parameter's .grad undefined.
    auto module = torch::jit::load(fixture(name));
    EXPECT_TRUE((*module.parameters().begin()).requires_grad());
  }
  // Tracked, the only leaf in the logits' graph is where it starts: the earliest
  // activation (form (a)) or the input (form (b)).
  const auto split = seq->forward(x, {"conv1", "relu2"}, true);
  EXPECT_EQ(leaves_of(split.logits), 1);
  EXPECT_TRUE(split.activations[0].is_leaf());
  EXPECT_FALSE(split.activations[1].is_leaf());
  EXPECT_EQ(leaves_of(tup->forward(x, {"1", "2"}, true).logits), 1);
}

// Form (a) models expose the head's weights for CAM only where the rest is GAP + fc.
TEST(ScriptedModel, CamWeightsAreTheLinearHeadAfterGlobalPooling) {
  auto model = am::open_scripted_model(small("sequential.pt"));
  const auto w = model->cam_weights("relu2");
  ASSERT_TRUE(w.defined());
  auto module = torch::jit::load(fixture("sequential.pt"));
  EXPECT_TRUE(torch::equal(w, module.attr("fc").toModule().attr("weight").toTensor()));
  EXPECT_EQ(w.sizes(), (std::vector<std::int64_t>{5, 6}));
  EXPECT_FALSE(model->cam_weights("conv1").defined());
  EXPECT_FALSE(model->cam_weights("conv2").defined());  // a ReLU before the pool
  // CAM with these weights is the logits minus the bias, averaged over the map.
  const auto x = golden("input");
  const auto a = model->forward(x, {"relu2"}, false).activations[0];
  const auto cam = torch::einsum("ck,bkhw->bchw", {w, a}).mean({2, 3});
  const auto bias = module.attr("fc").toModule().attr("bias").toTensor();
  expect_close(cam + bias, golden("seq_logits"));
  EXPECT_TRUE(contains(error_message([&] { model->cam_weights("fc"); }), "unknown layer 'fc'"));
  auto tup = am::open_scripted_model(small("tupled.pt", "forward_with_activations"));
  EXPECT_FALSE(tup->cam_weights("2").defined());
}

TEST(ScriptedModel, PrepareNormalisesPerChannel) {
  auto plain = am::open_scripted_model(small("sequential.pt"));
  const auto images = torch::rand({2, 3, 4, 5});
  EXPECT_TRUE(torch::equal(plain->prepare(images), images));
  auto model = am::open_scripted_model(small("sequential.pt").mean({0.5, 0.25, 0.0}).std({0.5, 2.0, 0.1}));
  const auto out = model->prepare(images);
  expect_close(out[0][0], (images[0][0] - 0.5) / 0.5);
  expect_close(out[1][1], (images[1][1] - 0.25) / 2.0);
  expect_close(out[1][2], images[1][2] / 0.1);
  EXPECT_TRUE(contains(error_message([&] { model->prepare(torch::rand({2, 1, 4, 5})); }), "expected images [B,3,H,W]"));
  EXPECT_TRUE(contains(error_message([&] { am::open_scripted_model(small("sequential.pt").mean({0.5}).std({0.5})); }),
                       "expected mean and std of 3 values each"));
  EXPECT_TRUE(contains(
      error_message([&] { am::open_scripted_model(small("sequential.pt").mean({0, 0, 0}).std({1, 0, 1})); }),
      "expected std > 0"));
}

TEST(ScriptedModel, ClassNamesMustCoverTheLogits) {
  auto model = am::open_scripted_model(small("sequential.pt").class_names({"a", "b", "c", "d", "e"}));
  EXPECT_EQ(model->class_names().size(), 5u);
  EXPECT_TRUE(contains(error_message([&] { am::open_scripted_model(small("sequential.pt").class_names({"a"})); }),
                       "1 class names given for 5 classes"));
}

TEST(ScriptedModel, FileProblemsAreOneLineIoErrorsNamingTheFile) {
  const auto missing = thrown_message<attend::IoError>([] { am::open_scripted_model(am::ScriptedModelOptions("/nonexistent/m.pt")); });
  EXPECT_EQ(missing, "/nonexistent/m.pt: no such file");
  for (const auto& name : {std::string(ATTEND_TEST_DATA) + "/digit-28.png", fixture("make_saliency_models.py")}) {
    const auto message = thrown_message<attend::IoError>([&] { am::open_scripted_model(am::ScriptedModelOptions(name)); });
    EXPECT_EQ(message.rfind(name + ": not a TorchScript file", 0), 0u) << message;
    EXPECT_FALSE(contains(message, "\n")) << message;
  }
}

TEST(ScriptedModel, ErrorsSayWhatWasExpected) {
  const auto no_method = error_message([] { am::open_scripted_model(small("tupled.pt", "features")); });
  EXPECT_TRUE(contains(no_method, "tupled.pt: the module has no method 'features'")) << no_method;
  EXPECT_TRUE(contains(no_method, "forward_with_activations")) << no_method;
  EXPECT_TRUE(contains(no_method, "forward_with_pooled")) << no_method;

  const auto not_tuple = error_message([] { am::open_scripted_model(small("tupled.pt", "forward")); });
  EXPECT_TRUE(contains(not_tuple, "method 'forward' returns a tensor [1, 5], expected a tuple")) << not_tuple;
  const auto flat = error_message([] { am::open_scripted_model(small("tupled.pt", "forward_with_pooled")); });
  EXPECT_TRUE(contains(flat, "returns a tuple (tensor [1, 5], tensor [1, 6, 16, 16], tensor [1, 6])")) << flat;
  const auto not_chain = error_message([] { am::open_scripted_model(small("tupled.pt")); });
  EXPECT_TRUE(contains(not_chain, "tupled.pt: child 'fc' (Linear) fails on an input [1, 2048]")) << not_chain;
  EXPECT_TRUE(contains(not_chain, "do its children chain like forward?")) << not_chain;

  auto seq = am::open_scripted_model(small("sequential.pt"));
  const auto unknown = error_message([&] { seq->forward(golden("input"), {"layer4"}, true); });
  EXPECT_TRUE(contains(unknown, "unknown layer 'layer4'")) << unknown;
  EXPECT_TRUE(contains(unknown, "(expected one of conv1, relu1, conv2, relu2, pool)")) << unknown;
  auto tup = am::open_scripted_model(small("tupled.pt", "forward_with_activations"));
  EXPECT_TRUE(contains(error_message([&] { tup->forward(golden("input"), {"3"}, false); }), "expected one of 1, 2"));

  const auto broken = error_message([] { am::open_scripted_model(small("broken_split.pt")); });
  EXPECT_TRUE(contains(broken, "broken_split.pt: the split at children does not reproduce forward (largest difference"))
      << broken;
  EXPECT_TRUE(contains(broken, "on a probe input)")) << broken;

  const auto channels = error_message([] { am::open_scripted_model(small("sequential.pt").channels(1)); });
  EXPECT_TRUE(contains(channels, "sequential.pt: forward fails on an input [1, 1, 32, 32]")) << channels;
  EXPECT_FALSE(contains(channels, "\n")) << channels;
}
