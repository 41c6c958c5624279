#!/usr/bin/python3
"""PyTorch twin of bench_train_step.c: official SampleCNN + projector, NT-Xent, Adam, train mode.
Usage: /usr/bin/python3 bench/bench_train_step.py [VIEWS=8] [STEPS=3] (threads from OMP_NUM_THREADS)."""
import os
import resource
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden"))


def main():
    views = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    import make_train_step as m  # the fixture's model and loss definitions, official widths here
    m.WIDTHS = [1, 128, 128, 128, 256, 256, 256, 256, 256, 256, 512, 512]
    enc = m.Encoder()
    proj = nn.Sequential(nn.Linear(512, 512, bias=False), nn.ReLU(), nn.Linear(512, 64, bias=False))
    opt = torch.optim.Adam(list(enc.parameters()) + list(proj.parameters()), lr=3e-4)
    x = torch.randn(views, 59049) * 0.3

    def step():
        opt.zero_grad()
        loss = m.nt_xent(proj(enc(x)), 0.5)
        loss.backward()
        opt.step()
        return loss.item()

    step()
    t0 = time.monotonic()
    for _ in range(steps):
        loss = step()
    dt = time.monotonic() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"PyTorch {torch.__version__}: views {views} steps {steps}: {views * steps / dt:.2f} chunks/s "
          f"({1e3 * dt / steps:.0f} ms/step); loss {loss:.4f}; peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
