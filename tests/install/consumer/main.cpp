// Uses one function of each library through the installed headers and checks values.
#include <attend/attention/mask.h>
#include <attend/datasets/idx.h>
#include <attend/models/registry.h>
#include <attend/vision/convert.h>

#include <torch/torch.h>

#include <opencv2/core.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : ".";
  const auto data = torch::arange(12, torch::kUInt8).reshape({3, 4});
  attend::datasets::write_idx(dir + "/consumer.idx", data);
  const bool idx_ok = torch::equal(attend::datasets::read_idx(dir + "/consumer.idx"), data);

  const cv::Mat m(2, 2, CV_8UC3, cv::Scalar(0, 0, 255));
  const bool vision_ok = attend::vision::mat_to_tensor(m)[0].eq(1.0f).all().item<bool>();

  const auto w = attend::attention::masked_softmax(torch::zeros({1, 4}), torch::tensor({{true, true, false, false}}));
  const bool attention_ok = torch::allclose(w, torch::tensor({{0.5f, 0.5f, 0.0f, 0.0f}}));

  namespace am = attend::models;
  const auto& fc = am::model_registry().at("fc");
  auto model = am::make_classifier("fc", am::complete_options(fc, {{"hidden", {4}}}, am::InputShape{1, 2, 2}));
  am::CheckpointInfo info;
  info.model = {model->kind(), model->options()};
  am::save_checkpoint(dir + "/consumer.pt", info, model->module());
  const bool models_ok = am::load_classifier(dir + "/consumer.pt")->logits(torch::zeros({1, 1, 2, 2})).size(1) == 10;

  std::printf("idx %d vision %d attention %d models %d\n", idx_ok, vision_ok, attention_ok, models_ok);
  return idx_ok && vision_ok && attention_ok && models_ok ? 0 : 1;
}
