"""make_model.py OUT.safetensors [--seed N] - an official-width (128..512, 11 layers, 50 tags) random
SampleCNN for the benchmarks, in the clmrd safetensors format, so bench_infer (C) and bench_torch.py
run on exactly the same weights. Built by tests/golden/samplecnn_torch.py (realistic BN statistics).
Run with /usr/bin/python3.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden"))
import samplecnn_torch as sc  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=20260)
    a = ap.parse_args()
    model = sc.make_model(sc.OFFICIAL_WIDTHS, a.seed)
    sc.save_model(model, a.out, "bench-random-official")
    print(f"wrote {a.out}: {sum(p.numel() for p in model.parameters())} parameters")


if __name__ == "__main__":
    main()
