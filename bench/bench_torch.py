"""bench_torch.py MODEL.safetensors - PyTorch chunks/s on the same weights as bench_infer.

Variants, inference mode (--variants, default all):
  eager        the reference nn.Sequential of Conv1d + BatchNorm1d + ReLU (+ MaxPool1d), fp32, as
               CLMR runs it;
  mkldnn       the best fp32 variant we know for torch 1.13 on CPU: BatchNorm folded into the
               convolution, the net rewritten as Conv2d (kernel 1x3) on mkldnn tensors, converted
               with torch.utils.mkldnn.to_mkldnn so weights are pre-reordered, ReLU and 1x3
               max-pooling on the mkldnn tensors; only the 512-d embedding goes back to a dense
               tensor for the head;
  mkldnn-bf16  the same with bf16 weights and activations (to_mkldnn(..., torch.bfloat16)): the
               best bf16 variant we know (oneDNN's AVX512-BF16 / AMX kernels);
  eager-bf16   the eager net under torch.autocast("cpu", dtype=torch.bfloat16).
Torch's speed here depends on its allocator: bench/run.sh runs this file with a tuned glibc malloc
(GLIBC_TUNABLES mmap_max=0, trim_threshold=64G) and with jemalloc, as a deployment would.
For each thread count (torch.set_num_threads) and batch, two warm-up calls then repeated calls for
at least --seconds. Prints `RESULT torch-<variant> <threads> <batch> <chunks/s> <GFLOP/s> <frac>`
and checks once that both variants agree with each other (max abs diff of the scores).
Run with /usr/bin/python3.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.mkldnn
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden"))
import safetensors_io  # noqa: E402
import samplecnn_torch as sc  # noqa: E402

GFLOP_OFFICIAL = 3.4572


def load_eager(path):
    tensors, _ = safetensors_io.read(path)
    n_layers = len({k.split(".")[1] for k in tensors if k.startswith("sequential.")})
    widths = [tensors[f"sequential.{i}.0.weight"].shape[0] for i in range(n_layers)]
    n_tags = tensors["fc.weight"].shape[0] if "fc.weight" in tensors else 0
    model = sc.SampleCNN(widths, n_tags)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()})
    return model.eval()


class MkldnnSampleCNN(nn.Module):
    """The same network as Conv2d (1 x k) with BN folded in; runs on mkldnn tensors."""

    def __init__(self, eager):
        super().__init__()
        convs, self.pool = [], []
        for block in eager.sequential:
            conv, bn = block[0], block[1]
            s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            c2 = nn.Conv2d(conv.in_channels, conv.out_channels, (1, conv.kernel_size[0]),
                           stride=(1, conv.stride[0]), padding=(0, conv.padding[0]))
            with torch.no_grad():
                c2.weight.copy_((conv.weight * s[:, None, None]).unsqueeze(2))
                c2.bias.copy_((conv.bias - bn.running_mean) * s + bn.bias)
            convs.append(c2)
            self.pool.append(len(block) > 3)
        self.convs = nn.ModuleList(convs)
        # plain tensors, not a module, so to_mkldnn leaves the head dense
        self.fc_w = eager.fc.weight.detach().clone() if eager.fc is not None else None
        self.fc_b = eager.fc.bias.detach().clone() if eager.fc is not None else None

    def forward(self, x):  # x: mkldnn (B, 1, 1, L)
        for conv, pool in zip(self.convs, self.pool):
            x = torch.relu(conv(x))
            if pool:
                x = F.max_pool2d(x, (1, 3), (1, 3))
        h = x.to_dense().reshape(x.shape[0], -1).float()  # the head in fp32, as clmrd does
        return torch.sigmoid(F.linear(h, self.fc_w, self.fc_b)) if self.fc_w is not None else h


def rate(fn, seconds):
    fn()
    fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        t = time.perf_counter() - t0
        if t >= seconds and n >= 3:
            return n, t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", default="1,8,32")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--peak", type=float, default=428.0)
    ap.add_argument("--variants", default="eager,mkldnn,mkldnn-bf16,eager-bf16")
    ap.add_argument("--label", default="", help="suffix of the RESULT names, e.g. -jemalloc")
    a = ap.parse_args()
    eager = load_eager(a.model)
    mk = torch.utils.mkldnn.to_mkldnn(MkldnnSampleCNN(eager).eval())
    mk16 = torch.utils.mkldnn.to_mkldnn(MkldnnSampleCNN(eager).eval(), torch.bfloat16)
    chunk = eager.chunk
    rng = np.random.RandomState(12345)
    print(f"# torch {torch.__version__}, mkldnn available: {torch.backends.mkldnn.is_available()}")
    with torch.inference_mode():
        x = torch.from_numpy(rng.uniform(-0.3, 0.3, (4, chunk)).astype(np.float32))
        ref = torch.sigmoid(eager(x))
        got = mk(x.reshape(4, 1, 1, chunk).to_mkldnn())
        print(f"# eager vs mkldnn variant: max |score diff| = {float((ref - got).abs().max()):.2e}")
        got16 = mk16(x.reshape(4, 1, 1, chunk).to_mkldnn(torch.bfloat16)).float()
        print(f"# eager vs mkldnn-bf16 variant: max |score diff| = "
              f"{float((ref - got16).abs().max()):.2e}")
        gflop = GFLOP_OFFICIAL if eager.widths == sc.OFFICIAL_WIDTHS else float("nan")
        for th in [int(t) for t in a.threads.split(",")]:
            torch.set_num_threads(th)
            for b in [int(v) for v in a.batch.split(",")]:
                xb = torch.from_numpy(rng.uniform(-0.3, 0.3, (b, chunk)).astype(np.float32))
                def eager16():
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        return torch.sigmoid(eager(xb))
                runs = {
                    "eager": lambda: torch.sigmoid(eager(xb)),
                    "mkldnn": lambda: mk(xb.reshape(b, 1, 1, chunk).to_mkldnn()),
                    "mkldnn-bf16": lambda: mk16(xb.reshape(b, 1, 1, chunk).to_mkldnn(torch.bfloat16)),
                    "eager-bf16": eager16,
                }
                for name in a.variants.split(","):
                    n, t = rate(runs[name], a.seconds)
                    cps = n * b / t
                    print(f"RESULT torch-{name}{a.label} {th} {b} {cps:.2f} {cps * gflop:.1f} "
                          f"{cps * gflop / a.peak:.3f}", flush=True)


if __name__ == "__main__":
    main()
