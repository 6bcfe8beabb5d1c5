#!/usr/bin/python3
"""Writes a ResNet-18 (torchvision's architecture, written out here: no torchvision
needed) with random weights as TorchScript in both forms attend's scripted models
take, for benchmarking saliency maps on a real-sized network. Run with Debian's
python3-torch, i.e. the system interpreter:

    /usr/bin/python3 bench/make_resnet18.py [OUT_DIR]      (default /tmp)

  OUT_DIR/resnet18_seq.pt     form (a): top-level children conv1, bn1, relu, maxpool,
                              layer1..layer4, avgpool, fc; forward runs them in order
                              and flattens before fc (as torchvision's ResNet does).
  OUT_DIR/resnet18_tupled.pt  form (b): the same weights, plus an exported
                              forward_with_activations(x) -> (logits, layer3 output
                              [B,256,14,14], layer4 output [B,512,7,7]).

Input [B,3,224,224], 1000 classes, torchvision's initialisation, torch.manual_seed(0).
About 45 MB each; not kept in the repository.
"""
import os
import sys
from typing import Tuple

import torch
import torch.nn as nn


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = nn.Identity()
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


def stage(cin, cout, stride):
    return nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout))


class ResNet18(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = stage(64, 64, 1)
        self.layer2 = stage(64, 128, 2)
        self.layer3 = stage(128, 256, 2)
        self.layer4 = stage(256, 512, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


class ResNet18Tupled(ResNet18):
    @torch.jit.export
    def forward_with_activations(self, x) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        a3 = self.layer3(self.layer2(self.layer1(x)))
        a4 = self.layer4(a3)
        return self.fc(torch.flatten(self.avgpool(a4), 1)), a3, a4


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "/tmp"
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    seq = ResNet18().eval()
    tupled = ResNet18Tupled().eval()
    tupled.load_state_dict(seq.state_dict())
    names = [n for n, _ in seq.named_children()]
    assert names == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"], names
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        chained = x
        for module in seq.children():
            chained = module(torch.flatten(chained, 1) if isinstance(module, nn.Linear) else chained)
        assert torch.allclose(chained, seq(x), atol=1e-5)
        assert torch.allclose(tupled.forward_with_activations(x)[0], seq(x), atol=1e-5)
    for name, model in (("resnet18_seq.pt", seq), ("resnet18_tupled.pt", tupled)):
        path = os.path.join(out_dir, name)
        torch.jit.script(model).save(path)
        print(path)


if __name__ == "__main__":
    main()
