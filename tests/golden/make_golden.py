#!/usr/bin/python3
"""make_golden.py - writes the committed PyTorch golden fixtures under tests/fixtures/.

DESIGN: deterministic (fixed seeds), so re-running reproduces the same bytes on the same torch
version. Expected values are computed by the reference SampleCNN (samplecnn_torch.py) in float64
from the float32 weights and inputs, so the fixtures are the exact answer for those float32 numbers
and the C side's only error is its own rounding. Early layers are large (C x 19683 per chunk), so
for any layer output bigger than FULL_LIMIT values we store a fixed random subset with its flat
indices into the (B, C, L) tensor; later layers are stored whole.

Outputs:
  tests/fixtures/models/tiny.safetensors   widths 8..16, 11 layers, 50 MTT tags (for other tests)
  tests/fixtures/golden/model.safetensors  widths 16..32, 11 layers, 50 MTT tags
  tests/fixtures/golden/data.safetensors   input (B, 59049); layer<i>.idx (I32) + layer<i>.val
                                           (F32) for every block i; embedding (B, D); logits and
                                           scores (B, 50); metadata describing the shapes
Usage: /usr/bin/python3 tests/golden/make_golden.py [--out DIR]
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import samplecnn_torch as ref  # noqa: E402

GOLDEN_WIDTHS = [16, 16, 16, 24, 24, 24, 24, 24, 24, 32, 32]
FULL_LIMIT = 4096
SUBSAMPLE = 2048


@torch.no_grad()
def golden_data(model, x, seed):
    """Dict of numpy arrays (the data file) from the float64 forward of model on x."""
    m64 = ref.SampleCNN(model.widths, model.fc.out_features if model.fc is not None else 0)
    m64.load_state_dict(model.state_dict())
    m64 = m64.double().eval()
    xt = torch.from_numpy(x.astype(np.float64))
    outs = m64.layer_outputs(xt)
    rng = np.random.RandomState(seed)
    data = {"input": x.astype(np.float32)}
    for i, o in enumerate(outs):
        flat = o.numpy().reshape(-1)
        if flat.size > FULL_LIMIT:
            idx = np.sort(rng.choice(flat.size, SUBSAMPLE, replace=False))
            idx[0], idx[-1] = 0, flat.size - 1
            idx = np.unique(idx)
        else:
            idx = np.arange(flat.size)
        data["layer%d.idx" % i] = idx.astype(np.int32)
        data["layer%d.val" % i] = flat[idx].astype(np.float32)
    emb = m64.embed(xt)
    data["embedding"] = emb.numpy().astype(np.float32)
    if m64.fc is not None:
        logits = m64.fc(emb)
        data["logits"] = logits.numpy().astype(np.float32)
        data["scores"] = torch.sigmoid(logits).numpy().astype(np.float32)
    return data


def data_metadata(model, x):
    return {"format": "clmr-golden", "batch": str(x.shape[0]), "chunk_samples": str(model.chunk),
            "widths": json.dumps(model.widths),
            "inputs": "music-like 0, music-like 1, digital silence, full-scale clipped sine",
            "generator": "tests/golden/make_golden.py (float64 torch %s)" % torch.__version__}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "..", "fixtures"))
    args = ap.parse_args()
    os.makedirs(os.path.join(args.out, "models"), exist_ok=True)
    os.makedirs(os.path.join(args.out, "golden"), exist_ok=True)

    tiny = ref.make_model(ref.TINY_WIDTHS, seed=11)
    ref.save_model(tiny, os.path.join(args.out, "models", "tiny.safetensors"), "tiny-random",
                   extra={"description": "random test model (widths 8-16), not trained: tags are noise",
                          "source": "tests/golden/make_golden.py seed 11"})

    model = ref.make_model(GOLDEN_WIDTHS, seed=7)
    ref.save_model(model, os.path.join(args.out, "golden", "model.safetensors"), "golden-random",
                   extra={"source": "tests/golden/make_golden.py seed 7"})
    x = ref.golden_inputs(model.chunk, seed=3)
    ref.safetensors_io.write(os.path.join(args.out, "golden", "data.safetensors"),
                             golden_data(model, x, seed=5), data_metadata(model, x))


if __name__ == "__main__":
    main()
