"""The committed training-step fixtures are what tests/golden/make_train_step.py produces.

Regenerates them into a temporary folder with torch (single thread, seeded) and compares every
tensor with the committed files: bit-identical is expected on one machine; 1e-6 relative (of each
tensor's scale) allows a different CPU's float32 kernels. Also checks the fixture stays under the
2 MB budget and that the float64 reference gradients are close to the float32 ones (so the C test's
two references describe the same step).
"""
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import safetensors_io  # noqa: E402

FIXTURES = os.path.join(ROOT, "tests", "fixtures", "train_step")
NAMES = ["contrastive", "supervised", "adam"]


def test_fixture_size_budget():
    total = sum(os.path.getsize(os.path.join(FIXTURES, f"{n}.safetensors")) for n in NAMES)
    assert total < 2 * 1024 * 1024


def test_fixtures_regenerate(tmp_path):
    subprocess.run([sys.executable, os.path.join(ROOT, "tests", "golden", "make_train_step.py"),
                    str(tmp_path)], check=True, capture_output=True, timeout=300)
    for name in NAMES:
        want, want_meta = safetensors_io.read(os.path.join(FIXTURES, f"{name}.safetensors"))
        got, got_meta = safetensors_io.read(os.path.join(tmp_path, f"{name}.safetensors"))
        assert sorted(got) == sorted(want)
        assert got_meta == want_meta
        for key, ref in want.items():
            scale = max(float(np.abs(ref).max()), 1e-30)
            assert float(np.abs(got[key] - ref).max()) <= 1e-6 * scale, key


def test_float64_reference_agrees():
    for name in ["contrastive", "supervised"]:
        t, _ = safetensors_io.read(os.path.join(FIXTURES, f"{name}.safetensors"))
        assert abs(t["loss"][0] - t["loss_f64"][0]) <= 1e-5 * abs(t["loss_f64"][0])
        for key in t:
            if not key.startswith("grad_f64.") or key.endswith("conv_b"):
                continue  # conv biases before BN: both are rounding noise around 0
            g64, g32 = t[key], t["grad." + key[len("grad_f64."):]]
            assert np.abs(g32 - g64).max() <= 5e-3 * np.abs(g64).max(), key
