// Uses one function of each library through the installed headers and checks values.
#include <attend/attention/mask.h>
#include <attend/datasets/idx.h>
#include <attend/models/checkpoint.h>
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

  torch::nn::Linear lin(2, 2);
  attend::models::CheckpointInfo info;
  info.kind = "linear";
  attend::models::save_checkpoint(dir + "/consumer.pt", info, *lin);
  const bool models_ok = attend::models::read_checkpoint_info(dir + "/consumer.pt").kind == "linear";

  std::printf("idx %d vision %d attention %d models %d\n", idx_ok, vision_ok, attention_ok, models_ok);
  return idx_ok && vision_ok && attention_ok && models_ok ? 0 : 1;
}
