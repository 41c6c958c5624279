#!/usr/bin/python3
"""reproduce_card.py - rebuild the model card's evaluation sets from Debian packages and check that
`clmrd eval` gives the card's numbers.

Steps, per requested split: regenerate it (make_labelled.py for test / test_opl3 / val, make_real.py
for real, make_vocal.py for vocal; made crops are kept, so a re-run is cheap), check every crop against the committed
models/eval/labelled/SHA256SUMS (same bytes = the card's audio), run `clmrd eval --json` with the
model on each of the split's manifests, and compare macro ROC-AUC and PR-AUC with the committed
results (models/eval/card.json) within --tolerance. Exit 0 when everything matches, 1 otherwise.

Example (about 10 minutes on 2 cores for all splits):
  /usr/bin/python3 tools/eval/reproduce_card.py --data /tmp/clmr-labelled --debs /tmp/debs
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COMMITTED = os.path.join(ROOT, "models", "eval", "labelled")
# split -> (generator arguments, manifests evaluated; names as in card.json "eval")
SPLITS = {
    "test": (["make_labelled.py", "--splits", "test", "--test-hours", "1.25"],
             {"test": "manifest.jsonl", "timgm6mb": "manifest_timgm6mb.jsonl",
              "freepats": "manifest_freepats.jsonl", "sf_gmbank": "manifest_sf_gmbank.jsonl"}),
    "test_opl3": (["make_labelled.py", "--splits", "test_opl3"], {"opl3": "manifest.jsonl"}),
    "real": (["make_real.py"], {"real": "manifest.jsonl"}),
    "vocal": (["make_vocal.py"], {"vocal": "manifest.jsonl"}),
    # the decision thresholds' set (tools/eval/tag_policy.py): checksums only, it is no evaluation
    "val": (["make_labelled.py", "--splits", "val"], {}),
}


def committed_sums():
    """{"split/crops/x.wav": sha256 hex} from models/eval/labelled/SHA256SUMS."""
    sums = {}
    with open(os.path.join(COMMITTED, "SHA256SUMS"), encoding="utf-8") as f:
        for line in f:
            digest, name = line.rstrip("\n").split("  ", 1)
            sums[name] = digest
    return sums


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder for the regenerated sets (kept between runs)")
    ap.add_argument("--debs", help="folder for the .deb files make_real.py downloads (default DATA/debs)")
    ap.add_argument("--splits", default="test,test_opl3,real,vocal", help="comma-separated subset of " + ",".join(SPLITS))
    ap.add_argument("--clmrd", default=os.path.join(ROOT, "build", "clmrd"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "clmr-default.safetensors"))
    ap.add_argument("--expected", default=os.path.join(ROOT, "models", "eval", "card.json"),
                    help="committed results: {\"eval\": {name: {\"roc_auc\", \"pr_auc\"}}}")
    ap.add_argument("--tolerance", type=float, default=0.002,
                    help="allowed |difference| of the macro figures (oneDNN may pick other kernels on another CPU)")
    ap.add_argument("--threads", type=int, default=0, help="encoder threads (default: all cores)")
    args = ap.parse_args()

    card = json.load(open(args.expected, encoding="utf-8"))
    expected = card["eval"]
    sums = committed_sums()
    failures = 0
    for split in args.splits.split(","):
        gen, manifests = SPLITS[split]
        script = os.path.join(ROOT, "tools", "datasets", gen[0])
        if gen[0] in ("make_real.py", "make_vocal.py"):
            cmd = [sys.executable, script, "--out", os.path.join(args.data, split),
                   "--cache", args.debs or os.path.join(args.data, "debs")]
        else:
            cmd = [sys.executable, script, "--out", args.data, *gen[1:]]
        print(f"reproduce_card: generating {split}: {' '.join(cmd)}", file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wanted = {n: d for n, d in sums.items() if n.startswith(split + "/")}
        bad = [n for n, d in sorted(wanted.items())
               if not os.path.exists(os.path.join(args.data, n))
               or hashlib.sha256(open(os.path.join(args.data, n), "rb").read()).hexdigest() != d]
        print(f"reproduce_card: {split}: {len(wanted) - len(bad)}/{len(wanted)} crops match SHA256SUMS", flush=True)
        if bad:
            print(f"  differing or missing: {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}")
            failures += 1
        for name, manifest in manifests.items():
            cmd = [args.clmrd, "eval", "--model", args.model, "--labels", os.path.join(args.data, split, manifest),
                   "--json", "-q"] + (["--threads", str(args.threads)] if args.threads else [])
            got = json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout)
            if got["model_id"] != card["model_id"]:
                print(f"reproduce_card: the card describes model {card['model_id']}, {args.model} is {got['model_id']}")
                failures += 1
            want = expected[name]
            ok = all(abs(got[k] - want[k]) <= args.tolerance for k in ("roc_auc", "pr_auc"))
            failures += not ok
            print(f"reproduce_card: {name} (model {got['model_id']}): ROC-AUC {got['roc_auc']:.4f} (card {want['roc_auc']:.4f}), "
                  f"PR-AUC {got['pr_auc']:.4f} (card {want['pr_auc']:.4f}) {'ok' if ok else 'MISMATCH'}", flush=True)
    print("reproduce_card: " + ("all match" if not failures else f"{failures} mismatches"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
