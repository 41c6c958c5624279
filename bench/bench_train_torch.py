#!/usr/bin/python3
"""bench_train_torch.py - PyTorch twin of bench_train.c: the same contrastive step (official
SampleCNN in train mode + projector 512-512-64, NT-Xent tau 0.5, Adam lr 3e-4) on the same batch
size, one warm-up step then STEPS timed steps; prints one JSON line like bench_train.c.

Usage: /usr/bin/python3 bench/bench_train_torch.py PAIRS [STEPS=2]  (threads: OMP_NUM_THREADS, 2)
The model and loss are tests/golden/make_train_step.py's (the definitions the C step is checked
against), at official widths. Input: fixed pseudo-random audio-like signals (values do not change
the cost of a dense step).
"""
import json
import os
import resource
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden"))


def main():
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    torch.manual_seed(0)
    import make_train_step as m
    m.WIDTHS = [1, 128, 128, 128, 256, 256, 256, 256, 256, 256, 512, 512]
    enc = m.Encoder()
    proj = nn.Sequential(nn.Linear(512, 512, bias=False), nn.ReLU(), nn.Linear(512, 64, bias=False))
    opt = torch.optim.Adam(list(enc.parameters()) + list(proj.parameters()), lr=3e-4)
    x = torch.randn(2 * pairs, 59049) * 0.3

    def step():
        opt.zero_grad()
        loss = m.nt_xent(proj(enc(x)), 0.5)
        loss.backward()
        opt.step()
        return loss.item()

    t0 = time.monotonic()
    step()
    first = time.monotonic() - t0
    t0 = time.monotonic()
    for _ in range(steps):
        loss = step()
    dt = time.monotonic() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"impl": f"pytorch-{torch.__version__}", "pairs": pairs, "chunks": 2 * pairs,
                      "steps": steps, "chunks_per_s": round(2 * pairs * steps / dt, 3),
                      "ms_per_step": round(1e3 * dt / steps, 1), "first_step_ms": round(1e3 * first, 1),
                      "peak_rss_mb": round(rss), "loss": round(loss, 5)}))


if __name__ == "__main__":
    main()
