"""The C forward on an OFFICIAL-width SampleCNN (128..512 channels, 2.39 M parameters) against
PyTorch, generated at test time (the weights are too big to commit).

torch builds the reference network with random weights and calibrated BatchNorm statistics
(tests/golden/samplecnn_torch.py), saves it in the clmrd format, computes the expected embeddings
and sigmoid scores of 2 music-like chunks with its float32 forward, and tests/nn/golden_check (binary at
$CLMRD_BUILD/tests/nn/golden_check) compares every C path with them. Tolerance: max
|c - torch| / max(1, |torch|) <= 1e-4 (see golden_check.c). A second case shows the check fails
when the expectation is off.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))
import samplecnn_torch as ref  # noqa: E402

BUILD = os.environ.get("CLMRD_BUILD", os.path.join(ROOT, "build"))
CHECK = os.path.join(BUILD, "tests", "nn", "golden_check")


@torch.no_grad()
def write_case(tmp_path, model, x, name, dtype=torch.float64):
    """model file, inputs file and expected file (torch in dtype) for golden_check."""
    mpath = str(tmp_path / (name + ".safetensors"))
    ref.save_model(model, mpath, name)
    m64 = ref.SampleCNN(model.widths, model.fc.out_features)
    m64.load_state_dict(model.state_dict())
    m64 = m64.to(dtype).eval()
    emb = m64.embed(torch.from_numpy(x).to(dtype))
    scores = torch.sigmoid(m64.fc(emb))
    ipath, epath = str(tmp_path / "inputs.safetensors"), str(tmp_path / "expected.safetensors")
    ref.safetensors_io.write(ipath, {"input": x})
    ref.safetensors_io.write(epath, {"embedding": emb.numpy().astype(np.float32),
                                     "scores": scores.numpy().astype(np.float32)})
    return mpath, ipath, epath


def run_check(*args):
    assert os.path.exists(CHECK), "build first (%s)" % CHECK
    return subprocess.run([CHECK, *args], capture_output=True, text=True, timeout=600)


def test_official_width_reference_forward(tmp_path):
    torch.set_num_threads(2)
    torch.manual_seed(21)
    model = ref.randomize(ref.SampleCNN(ref.OFFICIAL_WIDTHS), seed=21, calib_chunks=2)
    assert sum(p.numel() for p in model.parameters()) == 2394162  # clmr.md: encoder + 50-way head
    x = ref.music_like(2, model.chunk, seed=22)
    # torch's own float32 forward here (float64 convolutions are 10x slower on this machine): its
    # rounding (~1e-6) adds to the C side's, both far inside the tolerance
    mpath, ipath, epath = write_case(tmp_path, model, x, "official-random", torch.float32)
    info = json.loads(subprocess.run([os.path.join(BUILD, "clmrd"), "inspect", "--json", mpath],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["param_count"] == 2394162 and info["widths"] == ref.OFFICIAL_WIDTHS
    p = run_check(mpath, ipath, epath)
    print(p.stdout, p.stderr)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "ref: 2 chunks" in p.stdout and "OK" in p.stdout


def test_check_detects_mismatch(tmp_path):
    # the tiny model keeps this fast; a 1e-3 shift of one score must be reported
    model = ref.make_model(ref.TINY_WIDTHS, seed=23)
    x = ref.music_like(2, model.chunk, seed=24)
    mpath, ipath, epath = write_case(tmp_path, model, x, "tiny")
    p = run_check(mpath, ipath, epath, "--path", "ref")
    assert p.returncode == 0, p.stdout + p.stderr
    t, _ = ref.safetensors_io.read(epath)
    t["scores"][1, 7] += 1e-3
    ref.safetensors_io.write(epath, t)
    p = run_check(mpath, ipath, epath)
    assert p.returncode == 1 and "MISMATCH" in p.stdout, p.stdout
    p = run_check(mpath, ipath, epath, "--path", "nonexistent")
    assert p.returncode == 2
