"""The PyTorch twin of bench_head_fit.c: Linear(512 -> 50), BCEWithLogitsLoss, Adam lr 1e-3,
batch 256, 90/10 split, a validation pass per epoch; same data recipe, same thread count.

Usage: /usr/bin/python3 bench/bench_head_torch.py [CHUNKS [EPOCHS [THREADS]]]
"""
import sys
import time

import numpy as np
import torch

n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
D, T, PER_FILE = 512, 50, 10
x = torch.from_numpy(np.random.default_rng(1).random((n, D), dtype=np.float32))
y = (x[::PER_FILE, :T] > 0.7).float().repeat_interleave(PER_FILE, 0)
nv = (n // PER_FILE // 10) * PER_FILE
xv, yv, xt, yt = x[:nv], y[:nv], x[nv:], y[nv:]
head = torch.nn.Linear(D, T)
opt = torch.optim.Adam(head.parameters(), lr=1e-3)
loss_fn = torch.nn.BCEWithLogitsLoss()
t0 = time.perf_counter()
for _ in range(epochs):
    perm = torch.randperm(len(xt))
    for i in range(0, len(xt), 256):
        idx = perm[i:i + 256]
        opt.zero_grad()
        loss = loss_fn(head(xt[idx]), yt[idx])
        loss.backward()
        opt.step()
    with torch.no_grad():
        vl = loss_fn(head(xv), yv).item()
dt = time.perf_counter() - t0
print(f"torch: {n} chunks ({len(xt)} train), {epochs} epochs, {dt / epochs:.3f} s/epoch, "
      f"{len(xt) * epochs / dt:.0f} train chunks/s, val loss {vl:.4f}")
