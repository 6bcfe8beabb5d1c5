#!/usr/bin/python3
"""Writes the TorchScript fixtures of attend's scripted-model tests
(tests/models/scripted_model_test.cpp). Run with Debian's python3-torch, i.e. the
system interpreter (the tests only read the files, they never need Python):

    /usr/bin/python3 tests/data/torchscript/make_saliency_models.py

Deterministic: torch.manual_seed(0), and the script re-runs itself with
PYTHONHASHSEED=0 so that TorchScript writes its constants in the same order; running
it again rewrites the same bytes.
All models take [B,3,32,32] and score 5 classes; the weights of the fc layers are
scaled by 50 so that logits and maps are not all tiny.

  sequential.pt        form (a): named children conv1, relu1, conv2, relu2, pool
                       (AdaptiveAvgPool2d(1)), fc (Linear 6 -> 5); forward runs them
                       in order and flattens before fc, as torchvision's ResNet does.
  tupled.pt            form (b): forward(x) -> logits; exported
                       forward_with_activations(x) -> (logits, act1 [B,4,32,32],
                       act2 [B,6,16,16]; a 1x1 conv and ReLU come after act2, so its
                       gradient varies over the map); forward_with_pooled(x) -> (logits,
                       act2, pooled [B,6]) (a 2-D "activation": C++ must refuse it).
  broken_split.pt      children conv1, relu1, pool, fc, but forward doubles the logits,
                       so chaining the children does not reproduce forward.
  saliency_golden.pt   a TorchScript module whose buffers hold reference values for a
                       fixed input [2,3,32,32] and class 1, computed with autograd:
                         input, seq_logits, tup_logits,
                         seq_gradcam_conv2, seq_hirescam_conv2,
                         seq_gradcam_relu2, seq_hirescam_relu2,
                         tup_gradcam_act2, tup_hirescam_act2      (maps [2,16,16])
                       Raw maps, no ReLU: Grad-CAM sum_k mean_ij(g_k) A_k, HiRes-CAM
                       sum_k g_k * A_k, g = d logits[:,1].sum() / dA. C++ reads them with
                       torch::jit::load(...).attr("name").toTensor().
"""
import os
import sys
from collections import OrderedDict
from typing import Tuple

import torch
import torch.nn as nn

CLASS = 1


class Sequential(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class Tupled(nn.Module):
    """A head with a 1x1 convolution and a ReLU before the pooling, so the gradient
    at act2 varies over the map (Grad-CAM and HiRes-CAM differ there)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(6, 8, 1)
        self.fc = nn.Linear(8, 5)

    def head(self, act2):
        return self.fc(torch.relu(self.conv3(act2)).mean((2, 3)))

    def forward(self, x):
        return self.head(torch.relu(self.conv2(torch.relu(self.conv1(x)))))

    @torch.jit.export
    def forward_with_activations(self, x) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        act1 = torch.relu(self.conv1(x))
        act2 = torch.relu(self.conv2(act1))
        return self.head(act2), act1, act2

    @torch.jit.export
    def forward_with_pooled(self, x) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        act2 = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.head(act2), act2, act2.mean((2, 3))


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        return 2.0 * self.fc(torch.flatten(self.pool(self.relu1(self.conv1(x))), 1))


class Golden(nn.Module):
    def __init__(self, values: "OrderedDict[str, torch.Tensor]"):
        super().__init__()
        for name, value in values.items():
            self.register_buffer(name, value.detach().contiguous().clone())

    def forward(self, x):
        return x


def raw_maps(logits, activation):
    """Grad-CAM and HiRes-CAM raw maps of CLASS (no ReLU) -> ([B,h,w], [B,h,w])."""
    (g,) = torch.autograd.grad(logits[:, CLASS].sum(), activation, retain_graph=True)
    gradcam = (g.mean((2, 3), keepdim=True) * activation).sum(1)
    hirescam = (g * activation).sum(1)
    return gradcam, hirescam


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    torch.manual_seed(0)
    seq = Sequential().eval()
    tup = Tupled().eval()
    broken = Broken().eval()
    with torch.no_grad():  # larger logits, so the maps are not all near 1e-3
        seq.fc.weight.mul_(50.0)
        tup.fc.weight.mul_(50.0)
    x = torch.randn(2, 3, 32, 32)
    golden = OrderedDict(input=x)

    # sequential.pt at conv2 and relu2, differentiated with autograd.
    with torch.no_grad():
        a1 = seq.relu1(seq.conv1(x))
    conv2 = seq.conv2(a1).detach().requires_grad_(True)
    relu2 = seq.relu2(conv2)
    seq_logits = seq.fc(torch.flatten(seq.pool(relu2), 1))
    assert torch.allclose(seq_logits, seq(x), atol=1e-6)
    golden["seq_logits"] = seq_logits
    golden["seq_gradcam_conv2"], golden["seq_hirescam_conv2"] = raw_maps(seq_logits, conv2)
    golden["seq_gradcam_relu2"], golden["seq_hirescam_relu2"] = raw_maps(seq_logits, relu2)

    # tupled.pt at act2.
    tup_logits, _, act2 = tup.forward_with_activations(x)
    assert torch.allclose(tup_logits, tup(x), atol=1e-6)
    golden["tup_logits"] = tup_logits
    golden["tup_gradcam_act2"], golden["tup_hirescam_act2"] = raw_maps(tup_logits, act2)

    scripted_seq = torch.jit.script(seq)
    assert [n for n, _ in scripted_seq.named_children()] == ["conv1", "relu1", "conv2", "relu2", "pool", "fc"]
    scripted_seq.save(os.path.join(here, "sequential.pt"))
    torch.jit.script(tup).save(os.path.join(here, "tupled.pt"))
    torch.jit.script(broken).save(os.path.join(here, "broken_split.pt"))
    torch.jit.script(Golden(golden)).save(os.path.join(here, "saliency_golden.pt"))


if __name__ == "__main__":
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    main()
