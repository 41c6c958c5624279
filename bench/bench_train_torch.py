#!/usr/bin/python3
"""bench_train_torch.py - PyTorch twin of bench_train.c: the same contrastive step (official
SampleCNN in train mode + projector 512-512-64, NT-Xent tau 0.5, Adam lr 3e-4) on the same batch
size, one warm-up step then STEPS timed steps; prints one JSON line like bench_train.c.

Usage: /usr/bin/python3 bench/bench_train_torch.py PAIRS [STEPS=2] [fp32|bf16]
(threads: OMP_NUM_THREADS, 2). bf16 = torch.autocast("cpu", bfloat16) around the forward and
loss (convolutions and linear layers in bf16, fp32 master weights and optimizer, PyTorch's usual
CPU mixed precision); fp32 = plain eager. Run it with a tuned allocator as a deployment would
(GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736 or
LD_PRELOAD=libjemalloc.so.2; train_bench.py does): glibc's default re-faults every large buffer
in every step here.
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
    variant = sys.argv[3] if len(sys.argv) > 3 else "fp32"
    if variant not in ("fp32", "bf16"):
        sys.exit("variant must be fp32 or bf16")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    torch.manual_seed(0)
    import make_train_step as m
    m.WIDTHS = [1, 128, 128, 128, 256, 256, 256, 256, 256, 256, 512, 512]
    enc = m.Encoder()
    proj = nn.Sequential(nn.Linear(512, 512, bias=False), nn.ReLU(), nn.Linear(512, 64, bias=False))
    opt = torch.optim.Adam(list(enc.parameters()) + list(proj.parameters()), lr=3e-4)
    x = torch.randn(2 * pairs, 59049) * 0.3

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant == "bf16"):
            z = proj(enc(x))
        loss = m.nt_xent(z.float(), 0.5)  # the loss in fp32, as autocast recipes do
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
    alloc = ("jemalloc" if "jemalloc" in os.environ.get("LD_PRELOAD", "") else
             "glibc-tuned" if "mmap_max=0" in os.environ.get("GLIBC_TUNABLES", "") else "glibc")
    print(json.dumps({"impl": f"pytorch-{torch.__version__}-{variant}", "variant": variant,
                      "malloc": alloc, "pairs": pairs, "chunks": 2 * pairs,
                      "steps": steps, "chunks_per_s": round(2 * pairs * steps / dt, 3),
                      "ms_per_step": round(1e3 * dt / steps, 1), "first_step_ms": round(1e3 * first, 1),
                      "peak_rss_mb": round(rss), "loss": round(loss, 5)}))


if __name__ == "__main__":
    main()
