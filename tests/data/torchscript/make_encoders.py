#!/usr/bin/python3
"""Writes the TorchScript fixtures of attend's captioner tests (run with Debian's
python3-torch, /usr/bin/python3; the tests only read the files):

  backbone.pt  forward(x) -> class scores [B,10]; features(x) -> the map [B,8,H/4,W/4];
               child module "body" -> the same map
  flat.pt      forward(x) -> [B,8] (not a feature map: the captioner must refuse it)
"""
import os

import torch
import torch.nn as nn


class Body(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)

    def forward(self, x):
        return torch.relu(self.conv2(torch.relu(self.conv1(x))))


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = Body()
        self.head = nn.Linear(8, 10)

    @torch.jit.export
    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x).mean((2, 3)))


class Flat(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = Body()

    def forward(self, x):
        return self.body(x).mean((2, 3))


if __name__ == "__main__":
    torch.manual_seed(0)
    here = os.path.dirname(os.path.abspath(__file__))
    torch.jit.script(Backbone()).save(os.path.join(here, "backbone.pt"))
    torch.jit.script(Flat()).save(os.path.join(here, "flat.pt"))
