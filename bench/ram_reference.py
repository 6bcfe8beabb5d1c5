#!/usr/bin/python3
"""Reference point for bench/ram_bench: one RAM training step in plain PyTorch.

Written for attend (not copied) in the style of the popular Python RAM
implementations: the retina crops each sample in a Python loop and shrinks the
larger patches with avg_pool2d; the networks, sizes and loss are the same as
attend's (T=8, g=12, k=3, 60x60 images, batch 128, hidden 256).

Run with Debian's python3-torch (the system interpreter):
    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/ram_reference.py --threads 1
Prints the median images/s over the timed steps.
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def retina(images, loc, g, k, s):
    """Loop-over-samples glimpse: k patches of side g*s^i around loc, pooled to g x g."""
    b, c, h, w = images.shape
    big = g * s ** (k - 1)
    padded = F.pad(images, (big, big, big, big))
    centres = ((loc + 1.0) * 0.5 * torch.tensor([w, h], dtype=loc.dtype)).long() + big
    scales = []
    for i in range(k):
        side = g * s ** i
        patches = []
        for n in range(b):
            x0 = int(centres[n, 0]) - side // 2
            y0 = int(centres[n, 1]) - side // 2
            patches.append(padded[n, :, y0:y0 + side, x0:x0 + side])
        p = torch.stack(patches)
        if side != g:
            p = F.avg_pool2d(p, side // g)
        scales.append(p)
    return torch.stack(scales, 1)


class Ram(nn.Module):
    def __init__(self, g=12, k=3, s=2, hidden=256, classes=10, std=0.15):
        super().__init__()
        self.g, self.k, self.s, self.std = g, k, s, std
        self.what = nn.Linear(k * g * g, 128)
        self.where = nn.Linear(2, 128)
        self.what_out = nn.Linear(128, 256)
        self.where_out = nn.Linear(128, 256)
        self.core_input = nn.Linear(256, hidden)
        self.core_hidden = nn.Linear(hidden, hidden)
        self.location_net = nn.Linear(hidden, 2)
        self.baseline_net = nn.Linear(hidden, 1)
        self.classifier = nn.Linear(hidden, classes)

    def forward(self, x, steps):
        b = x.shape[0]
        loc = torch.zeros(b, 2)
        h = torch.zeros(b, self.core_hidden.in_features)
        log_pis, baselines = [], []
        for t in range(steps):
            glimpse = retina(x, loc, self.g, self.k, self.s).flatten(1)
            g = F.relu(self.what_out(F.relu(self.what(glimpse))) + self.where_out(F.relu(self.where(loc))))
            h = F.relu(self.core_input(g) + self.core_hidden(h))
            if t + 1 < steps:
                mean = torch.tanh(self.location_net(h.detach()))
                raw = mean.detach() + self.std * torch.randn_like(mean)
                log_pis.append(torch.distributions.Normal(mean, self.std).log_prob(raw).sum(1))
                baselines.append(self.baseline_net(h.detach()).squeeze(1))
                loc = raw.clamp(-1, 1)
        return F.log_softmax(self.classifier(h), 1), torch.stack(log_pis, 1), torch.stack(baselines, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Ram()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.rand(128, 1, 60, 60)
    y = torch.randint(0, 10, (128,))
    rates = []
    for i in range(args.steps + 3):
        t0 = time.perf_counter()
        log_probs, log_pis, baselines = model(x, 8)
        reward = (log_probs.argmax(1) == y).float().unsqueeze(1).expand_as(baselines)
        loss = (F.nll_loss(log_probs, y) + F.mse_loss(baselines, reward)
                - (log_pis * (reward - baselines.detach())).sum(1).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 3:
            rates.append(128 / (time.perf_counter() - t0))
    print(f"python reference RAM step: median {statistics.median(rates):.0f} images/s "
          f"(threads {args.threads}, torch {torch.__version__})")


if __name__ == "__main__":
    main()
