#!/usr/bin/python3
"""Writes the PyTorch fixtures the C training-step tests reproduce (tests/train/test_train_step.c).

Run from the repository root with Debian's interpreter (python3-torch 1.13):
    /usr/bin/python3 tests/golden/make_train_step.py [OUT_DIR]
Outputs (committed, ~0.2 MB in all) in tests/fixtures/train_step/:
  contrastive.safetensors  one CLMR pretraining step: 11-layer SampleCNN with widths 8..16,
                           projector Linear(16->20, no bias) + ReLU + Linear(20->12, no bias),
                           2N = 4 views, train-mode BN, NT-Xent tau 0.5, Adam lr 3e-4.
  supervised.safetensors   one supervised step on the same encoder + Linear(16->5) head, BCE-with-logits.
  adam.safetensors         three Adam steps (weight decay 1e-2, clip_grad_norm_ 0.5) on given gradients.
Tensor names: init.<p>, grad.<p>, updated.<p>, grad_f64.<p> (the same step computed in float64, rounded to
float32: the reference without float32 summation noise) for trainable <p> in layerI.{conv_w,conv_b,bn_gamma,bn_beta},
proj_w1, proj_w2, fc_w, fc_b; init./updated.layerI.{run_mean,run_var}; loss, loss_f64; h, z / logits for diagnosis.
The audio input is not stored: both sides build it with input_view() (integer arithmetic, exact in float32).
The projector sizes differ from the embedding width on purpose, so a transposed weight cannot pass.
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import safetensors_io  # noqa: E402

WIDTHS = [1, 8, 8, 8, 16, 16, 16, 16, 16, 16, 16, 16]  # widths[0] = input, 11 layers
N_LAYERS = 11
CHUNK = 3 ** (N_LAYERS - 1)
VIEWS = 4
PROJ_HIDDEN, PROJ_OUT, N_TAGS = 20, 12, 5
TAU, LR = 0.5, 3e-4
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "train_step")
if len(sys.argv) > 1:  # another output folder (the reproducibility test writes to a temporary one)
    OUT = sys.argv[1]


def input_batch():
    """(VIEWS, CHUNK) float32. Views v and v + VIEWS/2 share a sawtooth (same "track") and differ in
    an integer pseudo-noise; every value is k / 4096 with integer k, so float32 is exact in C too."""
    t = np.arange(CHUNK, dtype=np.int64)
    x = np.empty((VIEWS, CHUNK), dtype=np.float32)
    for v in range(VIEWS):
        b = v % (VIEWS // 2)
        saw = (t * (37 + 16 * b)) % 4096 - 2048
        noise = ((t * t + 7 * v) % 7919) % 1024 - 512
        x[v] = ((saw + noise * (1 + v // (VIEWS // 2))) // 2).astype(np.float32) / np.float32(4096)
    return x


def labels():
    """(VIEWS, N_TAGS) multi-hot targets y[b, t] = (3 b + t) mod 2."""
    b, t = np.meshgrid(np.arange(VIEWS), np.arange(N_TAGS), indexing="ij")
    return ((3 * b + t) % 2).astype(np.float32)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        layers = []
        for i in range(N_LAYERS):
            ic, oc = WIDTHS[i], WIDTHS[i + 1]
            if i == 0:
                block = [nn.Conv1d(ic, oc, 3, stride=3, padding=0), nn.BatchNorm1d(oc), nn.ReLU()]
            else:
                block = [nn.Conv1d(ic, oc, 3, stride=1, padding=1), nn.BatchNorm1d(oc), nn.ReLU()]
                if i < N_LAYERS - 1:
                    block.append(nn.MaxPool1d(3, stride=3))
            layers.append(nn.Sequential(*block))
        self.sequential = nn.Sequential(*layers)

    def forward(self, x):
        return self.sequential(x.unsqueeze(1)).flatten(1)


def nt_xent(z, tau):
    """The reference NT-Xent: cosine similarities / tau, positives i <-> i + N, self excluded,
    CrossEntropyLoss(reduction="sum") over the 2N rows divided by 2N."""
    n2 = z.shape[0]
    n = n2 // 2
    sim = nn.CosineSimilarity(dim=2)(z.unsqueeze(1), z.unsqueeze(0)) / tau
    pos = torch.cat([torch.diag(sim, n), torch.diag(sim, -n)]).reshape(n2, 1)
    mask = torch.ones((n2, n2), dtype=torch.bool)
    mask.fill_diagonal_(False)
    for i in range(n):
        mask[i, n + i] = False
        mask[n + i, i] = False
    neg = sim[mask].reshape(n2, -1)
    logits = torch.cat([pos, neg], dim=1)
    target = torch.zeros(n2, dtype=torch.long)
    return nn.CrossEntropyLoss(reduction="sum")(logits, target) / n2


def randomise(enc, gen):
    """Non-trivial BN affine and running statistics so their gradients and updates are tested."""
    with torch.no_grad():
        for blk in enc.sequential:
            bn = blk[1]
            bn.weight.copy_(torch.rand(bn.weight.shape, generator=gen) + 0.5)
            bn.bias.copy_((torch.rand(bn.bias.shape, generator=gen) - 0.5) * 0.2)
            bn.running_mean.copy_((torch.rand(bn.running_mean.shape, generator=gen) - 0.5) * 0.1)
            bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=gen) + 0.5)


def named(enc, proj=None, head=None):
    """{C name: tensor} of the trainable parameters."""
    out = {}
    for i, blk in enumerate(enc.sequential):
        out[f"layer{i}.conv_w"] = blk[0].weight
        out[f"layer{i}.conv_b"] = blk[0].bias
        out[f"layer{i}.bn_gamma"] = blk[1].weight
        out[f"layer{i}.bn_beta"] = blk[1].bias
    if proj is not None:
        out["proj_w1"] = proj[0].weight
        out["proj_w2"] = proj[2].weight
    if head is not None:
        out["fc_w"] = head.weight
        out["fc_b"] = head.bias
    return out


def stats(enc, prefix):
    out = {}
    for i, blk in enumerate(enc.sequential):
        out[f"{prefix}.layer{i}.run_mean"] = blk[1].running_mean.detach().numpy().copy()
        out[f"{prefix}.layer{i}.run_var"] = blk[1].running_var.detach().numpy().copy()
    return out


def np32(t):
    return t.detach().numpy().astype(np.float32).copy()


def one_step(kind, dtype=torch.float32):
    """One step in dtype; float64 runs give the rounding-free reference gradients."""
    torch.manual_seed(1234 if kind == "contrastive" else 4321)
    gen = torch.Generator().manual_seed(99)
    enc = Encoder()
    randomise(enc, gen)
    proj = head = None
    if kind == "contrastive":
        proj = nn.Sequential(nn.Linear(WIDTHS[-1], PROJ_HIDDEN, bias=False), nn.ReLU(),
                             nn.Linear(PROJ_HIDDEN, PROJ_OUT, bias=False))
        modules = [enc, proj]
    else:
        head = nn.Linear(WIDTHS[-1], N_TAGS)
        modules = [enc, head]
    for m in modules:
        m.to(dtype)
    params = named(enc, proj, head)
    tensors = {f"init.{k}": np32(v) for k, v in params.items()}
    tensors.update(stats(enc, "init"))
    for m in modules:
        m.train()
    opt = torch.optim.Adam([p for m in modules for p in m.parameters()], lr=LR)
    opt.zero_grad()
    x = torch.from_numpy(input_batch()).to(dtype)
    h = enc(x)
    if kind == "contrastive":
        z = proj(h)
        loss = nt_xent(z, TAU)
        tensors["z"] = np32(z)
    else:
        logits = head(h)
        loss = nn.BCEWithLogitsLoss()(logits, torch.from_numpy(labels()).to(dtype))
        tensors["logits"] = np32(logits)
    loss.backward()
    tensors["h"] = np32(h)
    tensors["loss"] = np.array([loss.item()], dtype=np.float32)
    for k, v in params.items():
        tensors[f"grad.{k}"] = np32(v.grad)
    if dtype == torch.float64:
        return tensors
    exact = one_step(kind, torch.float64)
    tensors["loss_f64"] = exact["loss"]
    for k in params:
        tensors[f"grad_f64.{k}"] = exact[f"grad.{k}"]
    opt.step()
    for k, v in params.items():
        tensors[f"updated.{k}"] = np32(v)
    tensors.update(stats(enc, "updated"))
    meta = {"widths": ",".join(map(str, WIDTHS)), "views": VIEWS, "tau": TAU, "lr": LR,
            "proj_hidden": PROJ_HIDDEN if proj is not None else 0,
            "proj_out": PROJ_OUT if proj is not None else 0, "n_tags": N_TAGS if head is not None else 0,
            "torch": torch.__version__}
    safetensors_io.write(os.path.join(OUT, f"{kind}.safetensors"), tensors, meta)
    print(f"{kind}: loss {loss.item():.6f}")
    return tensors


def adam_fixture():
    """Three steps of torch.optim.Adam(lr 1e-2, weight_decay 1e-2) with clip_grad_norm_(0.5) on
    gradients spanning many magnitudes, including exact zeros."""
    gen = torch.Generator().manual_seed(7)
    n = 1000
    p = torch.nn.Parameter(torch.randn(n, generator=gen))
    opt = torch.optim.Adam([p], lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
    tensors = {"p0": np32(p)}
    for s in range(1, 4):
        g = torch.randn(n, generator=gen) * torch.pow(10.0, torch.randint(-6, 1, (n,), generator=gen).float())
        g[::17] = 0
        tensors[f"g{s}"] = np32(g)
        p.grad = g.clone()
        tensors[f"norm{s}"] = np.array([torch.nn.utils.clip_grad_norm_([p], 0.5).item()], dtype=np.float32)
        opt.step()
        tensors[f"p{s}"] = np32(p)
    safetensors_io.write(os.path.join(OUT, "adam.safetensors"), tensors,
                         {"lr": 1e-2, "weight_decay": 1e-2, "clip": 0.5, "torch": torch.__version__})


if __name__ == "__main__":
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    one_step("contrastive")
    one_step("supervised")
    adam_fixture()
