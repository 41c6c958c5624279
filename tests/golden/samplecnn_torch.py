"""samplecnn_torch.py - the PyTorch reference SampleCNN used by the golden fixtures and Python tests.

DESIGN: the network is built exactly as CLMR's reference code builds it (an nn.Sequential of
Conv1d/BatchNorm1d/ReLU[/MaxPool1d] blocks named `sequential`, and a Linear head named `fc`), so its
state_dict has the official key names. Random weights are made non-trivial on purpose: BatchNorm
running statistics are calibrated on music-like audio (so activations stay O(1) through all layers,
like a trained model) and then perturbed, and the affine parameters are random, so a loader or kernel
that ignores or swaps any BN vector gives visibly wrong numbers. Run with Debian's /usr/bin/python3.
"""
import json
import os
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import safetensors_io  # noqa: E402

OFFICIAL_WIDTHS = [128, 128, 128, 256, 256, 256, 256, 256, 256, 512, 512]
TINY_WIDTHS = [8, 8, 8, 12, 12, 12, 12, 12, 12, 16, 16]
SAMPLE_RATE = 22050

MTT_TAGS = [
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
    "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman",
    "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice",
    "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello", "no voice", "weird",
    "country", "metal", "female voice", "choral",
]


class SampleCNN(nn.Module):
    """widths[i] = output channels of layer i (len(widths) = depth L); chunk = 3^(L-1)."""

    def __init__(self, widths, n_tags=50):
        super().__init__()
        layers = [nn.Sequential(nn.Conv1d(1, widths[0], kernel_size=3, stride=3, padding=0),
                                nn.BatchNorm1d(widths[0]), nn.ReLU())]
        for i in range(1, len(widths) - 1):
            layers.append(nn.Sequential(
                nn.Conv1d(widths[i - 1], widths[i], kernel_size=3, stride=1, padding=1),
                nn.BatchNorm1d(widths[i]), nn.ReLU(), nn.MaxPool1d(3, stride=3)))
        layers.append(nn.Sequential(
            nn.Conv1d(widths[-2], widths[-1], kernel_size=3, stride=1, padding=1),
            nn.BatchNorm1d(widths[-1]), nn.ReLU()))
        self.sequential = nn.Sequential(*layers)
        self.widths = list(widths)
        self.chunk = 3 ** (len(widths) - 1)
        self.fc = nn.Linear(widths[-1], n_tags) if n_tags else None

    def embed(self, x):
        """x (B, chunk) or (B, 1, chunk) -> (B, D)."""
        if x.dim() == 2:
            x = x.unsqueeze(1)
        out = self.sequential(x)
        return out.reshape(x.shape[0], -1)

    def forward(self, x):
        h = self.embed(x)
        return self.fc(h) if self.fc is not None else h

    def layer_outputs(self, x):
        """Outputs of every block (after ReLU and pooling), then the embedding."""
        if x.dim() == 2:
            x = x.unsqueeze(1)
        outs = []
        for block in self.sequential:
            x = block(x)
            outs.append(x)
        return outs


def music_like(n, length, seed, sr=SAMPLE_RATE):
    """n deterministic music-like chunks: a few harmonic notes with envelopes, a decaying
    percussive noise burst pattern and a little broadband noise; peak around 0.3-0.8."""
    rng = np.random.RandomState(seed)
    t = np.arange(length) / sr
    out = np.zeros((n, length), dtype=np.float64)
    for b in range(n):
        x = np.zeros(length)
        for _ in range(rng.randint(2, 6)):
            f0 = 55.0 * 2 ** (rng.randint(0, 48) / 12.0)
            onset = rng.uniform(0, t[-1] * 0.7)
            env = np.where(t >= onset, np.exp(-(t - onset) * rng.uniform(0.5, 4.0)), 0.0)
            for h in range(1, 6):
                x += env * rng.uniform(0.05, 0.3) / h * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6.28))
        beat = rng.uniform(0.3, 0.6)
        phase = np.mod(t, beat)
        x += 0.2 * np.exp(-phase * 40.0) * rng.randn(length)
        x += 0.01 * rng.randn(length)
        x *= rng.uniform(0.3, 0.8) / max(1e-9, np.abs(x).max())
        out[b] = x
    return out.astype(np.float32)


def golden_inputs(length, seed):
    """The golden set: two music-like chunks, digital silence and a full-scale clipped chunk."""
    music = music_like(2, length, seed)
    silence = np.zeros((1, length), dtype=np.float32)
    t = np.arange(length) / SAMPLE_RATE
    full = np.clip(1.7 * np.sin(2 * np.pi * 220.0 * t) + 0.5 * np.sin(2 * np.pi * 3.3 * t), -1.0, 1.0)
    return np.concatenate([music, silence, full[None, :].astype(np.float32)], axis=0)


@torch.no_grad()
def randomize(model, seed, calib_chunks=4):
    """Random weights with realistic BatchNorm statistics (see DESIGN)."""
    g = torch.Generator().manual_seed(seed)
    for block in model.sequential:
        conv, bn = block[0], block[1]
        fan_in = conv.in_channels * conv.kernel_size[0]
        bound = (6.0 / fan_in) ** 0.5  # kaiming uniform (relu), like the reference init
        conv.weight.copy_((torch.rand(conv.weight.shape, generator=g) * 2 - 1) * bound)
        conv.bias.copy_((torch.rand(conv.bias.shape, generator=g) * 2 - 1) * 0.1)
        bn.weight.copy_(0.5 + torch.rand(bn.weight.shape, generator=g))
        bn.bias.copy_((torch.rand(bn.bias.shape, generator=g) * 2 - 1) * 0.3)
    # Calibrate the running statistics on music: cumulative average over one batch, layer by layer.
    x = torch.from_numpy(music_like(calib_chunks, model.chunk, seed + 1000)).unsqueeze(1)
    for block in model.sequential:
        bn = block[1]
        bn.reset_running_stats()
        bn.momentum = None
        block.train()
        block(x)
        block.eval()
        bn.momentum = 0.1
        # perturb so the stored statistics are not exactly the batch statistics
        bn.running_mean.mul_(1 + 0.2 * (torch.rand(bn.running_mean.shape, generator=g) * 2 - 1))
        bn.running_mean.add_(0.01 * torch.randn(bn.running_mean.shape, generator=g))
        bn.running_var.mul_(0.6 + 0.8 * torch.rand(bn.running_var.shape, generator=g))
        bn.running_var.add_(1e-4)
        bn.num_batches_tracked.fill_(1000)
        x = block(x)
    if model.fc is not None:
        d = model.fc.in_features
        model.fc.weight.copy_(torch.randn(model.fc.weight.shape, generator=g) * (1.5 / d ** 0.5))
        model.fc.bias.copy_(torch.randn(model.fc.bias.shape, generator=g) * 0.5 - 1.0)
    model.eval()
    return model


def make_model(widths, seed, n_tags=50):
    torch.manual_seed(seed)
    return randomize(SampleCNN(widths, n_tags), seed)


def metadata(model, name, tags, extra=None):
    meta = {"format": "clmr-samplecnn", "sample_rate": str(SAMPLE_RATE),
            "chunk_samples": str(model.chunk), "name": name}
    if model.fc is not None:
        meta["tags"] = json.dumps(list(tags))
    meta.update(extra or {})
    return meta


def state_numpy(model):
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def save_model(model, path, name, tags=MTT_TAGS, extra=None):
    """Write model in the clmrd safetensors format (official key names, num_batches_tracked kept)."""
    safetensors_io.write(path, state_numpy(model), metadata(model, name, tags, extra))
