#!/usr/bin/python3
"""Reference point for bench/caption_bench: one teacher-forced training step of the
soft-attention Show-Attend-Tell captioner in plain PyTorch.

Written for attend (not copied) in the usual PyTorch-Python style of the popular
Show-Attend-Tell implementations: an nn.Module per part, a Python loop over the time
steps with nn.LSTMCell, additive attention recomputing its softmax each step, the
doubly stochastic regulariser. The sizes are attend's defaults: encoder blocks
32/64/128 (two 3x3 convolutions and a 2x2 max-pool each) on 64x64 grey images, an
8x8 grid, embedding 64, hidden 256, attention 128, vocabulary 28, gate and deep
output, dropout 0.5, captions of 11 tokens (<start>, 9 words, <end>), batch 64, Adam.

Run with Debian's python3-torch (the system interpreter):
    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/caption_reference.py --threads 1
Prints the median captions/s over the timed steps.
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Encoder(nn.Module):
    def __init__(self, filters=(32, 64, 128)):
        super().__init__()
        layers, c = [], 1
        for f in filters:
            layers += [nn.Conv2d(c, f, 3, padding=1), nn.ReLU(), nn.Conv2d(f, f, 3, padding=1), nn.ReLU(),
                       nn.MaxPool2d(2)]
            c = f
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        f = self.net(x)
        return f.flatten(2).transpose(1, 2)  # [B, N, D]


class Attention(nn.Module):
    def __init__(self, d, h, a):
        super().__init__()
        self.key = nn.Linear(d, a)
        self.query = nn.Linear(h, a)
        self.v = nn.Linear(a, 1)

    def forward(self, annotations, h):
        scores = self.v(torch.tanh(self.key(annotations) + self.query(h).unsqueeze(1))).squeeze(2)
        alpha = F.softmax(scores, dim=1)
        return (annotations * alpha.unsqueeze(2)).sum(1), alpha


class Decoder(nn.Module):
    def __init__(self, vocab, d=128, e=64, h=256, a=128, dropout=0.5):
        super().__init__()
        self.embedding = nn.Embedding(vocab, e)
        self.attention = Attention(d, h, a)
        self.lstm = nn.LSTMCell(e + d, h)
        self.init_h = nn.Linear(d, h)
        self.init_c = nn.Linear(d, h)
        self.f_beta = nn.Linear(h, 1)
        self.out_h = nn.Linear(h, e)
        self.out_z = nn.Linear(d, e)
        self.out = nn.Linear(e, vocab)
        self.dropout = nn.Dropout(dropout)

    def forward(self, annotations, tokens):
        mean = annotations.mean(1)
        h, c = torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))
        logits, alphas = [], []
        for t in range(tokens.size(1) - 1):
            e = self.embedding(tokens[:, t])
            context, alpha = self.attention(annotations, h)
            z = torch.sigmoid(self.f_beta(h)) * context
            h, c = self.lstm(torch.cat([e, z], 1), (h, c))
            logits.append(self.out(self.dropout(e + self.out_h(h) + self.out_z(z))))
            alphas.append(alpha)
        return torch.stack(logits, 1), torch.stack(alphas, 1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vocab, length = 28, 11
    encoder, decoder = Encoder(), Decoder(vocab)
    params = list(encoder.parameters()) + list(decoder.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-3)
    images = torch.rand(args.batch, 1, 64, 64)
    tokens = torch.randint(4, vocab, (args.batch, length))
    tokens[:, 0], tokens[:, -1] = 1, 2
    rates = []
    for step in range(args.steps + 3):
        start = time.perf_counter()
        optimizer.zero_grad()
        logits, alphas = decoder(encoder(images), tokens)
        xent = F.cross_entropy(logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1), reduction="sum")
        reg = ((1.0 - alphas.sum(1)) ** 2).sum()
        loss = (xent + reg) / (args.batch * (length - 1))
        loss.backward()
        optimizer.step()
        if step >= 3:  # warm-up steps not timed
            rates.append(args.batch / (time.perf_counter() - start))
    print(f"threads {args.threads}: median {statistics.median(rates):.1f} captions/s over {len(rates)} steps")


if __name__ == "__main__":
    main()
