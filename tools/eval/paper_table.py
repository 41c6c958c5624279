#!/usr/bin/python3
"""paper_table.py - the CLMR paper's kind of evaluation table on our labelled sets.

For every label fraction (default 1 %, 10 %, 100 % of the labelled-train clips, chosen by a
seeded shuffle of whole clips so that no clip is split between fractions' members) it fits and
evaluates:
  (a) / (b) ...  a linear head on each frozen encoder given with --encoder NAME=MODEL
                 (`clmrd fit-head`, the CLMR linear-evaluation protocol), and
  (c)            a fully supervised SampleCNN trained from scratch (`clmrd fit-supervised`)
                 when --supervised is given,
then runs `clmrd eval` on every test manifest (--test NAME=MANIFEST, repeatable) and writes
results.json (every fit and eval summary) and table.md (macro ROC-AUC / PR-AUC per model and
fraction) into --out. Every step is skipped when its output already exists, so an interrupted run
resumes where it stopped; delete a file to redo that step.

The test sets are never used for any choice: recipes are fixed on the command line, early
stopping uses the held-out part of each training fraction.
"""
import argparse
import hashlib
import json
import math
import os
import random
import re
import subprocess
import sys
import time

CLIP_RE = re.compile(r"_(\d+)_\d+\.[a-z0-9]+$")


def log(msg):
    print(f"[paper_table {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def read_manifest(path):
    folder = os.path.dirname(os.path.abspath(path))
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                if not os.path.isabs(row["path"]):
                    row["path"] = os.path.join(folder, row["path"])
                rows.append(row)
    return rows


def clip_of(path):
    """Crops of one generated clip share its id (train_00042_3.wav -> 42); other names are their own clip."""
    m = CLIP_RE.search(os.path.basename(path))
    return m.group(1) if m else path


def fraction_manifests(train_manifest, fractions, seed, outdir):
    """Writes train_fNNN.jsonl per fraction (absolute paths); returns {fraction: (path, clips, crops)}."""
    rows = read_manifest(train_manifest)
    clips = sorted({clip_of(r["path"]) for r in rows})
    order = clips[:]
    random.Random(seed).shuffle(order)
    out = {}
    for frac in fractions:
        n = max(1, math.ceil(len(order) * frac / 100.0))
        keep = set(order[:n])
        path = os.path.join(outdir, f"train_f{frac:g}.jsonl")
        chosen = [r for r in rows if clip_of(r["path"]) in keep]
        text = "".join(json.dumps({"path": r["path"], "tags": r["tags"]}) + "\n" for r in chosen)
        if not os.path.exists(path) or open(path, encoding="utf-8").read() != text:
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(path + ".tmp", path)
        out[frac] = (path, n, len(chosen))
    return out


def run_json(cmd, out_json, err_path):
    """Runs a clmrd command printing JSON on stdout into out_json unless that file exists."""
    if os.path.exists(out_json):
        return json.load(open(out_json, encoding="utf-8"))
    log(" ".join(cmd))
    t0 = time.time()
    with open(err_path, "w", encoding="utf-8") as err:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    if proc.returncode != 0:
        sys.exit(f"paper_table: command failed ({proc.returncode}), see {err_path}: {' '.join(cmd)}")
    data = json.loads(proc.stdout)
    data["_wall_s"] = round(time.time() - t0, 1)
    with open(out_json + ".tmp", "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    os.replace(out_json + ".tmp", out_json)
    return data


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clmrd", default="build/clmrd", help="clmrd binary (default build/clmrd)")
    ap.add_argument("--train", required=True, help="labelled-train manifest")
    ap.add_argument("--test", action="append", default=[], metavar="NAME=MANIFEST", help="test manifest (repeatable)")
    ap.add_argument("--encoder", action="append", default=[], metavar="NAME=MODEL",
                    help="frozen encoder for linear evaluation (repeatable), e.g. a=random.safetensors")
    ap.add_argument("--supervised", action="store_true", help="also train (c), a fully supervised SampleCNN")
    ap.add_argument("--fractions", default="1,10,100", help="label fractions in percent (default 1,10,100)")
    ap.add_argument("--seed", type=int, default=42, help="clip-shuffle seed of the fractions (default 42)")
    ap.add_argument("--work", required=True, help="folder for models, embeddings and logs")
    ap.add_argument("--out", required=True, help="folder for results.json and table.md")
    ap.add_argument("--tags", required=True, help="tag vocabulary of every head, one per line (models/eval/tags.txt)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--head-args", default="--batch 32 --lr 1e-3 --epochs 1000",
                    help="extra fit-head options (default: the card's recipe)")
    ap.add_argument("--supervised-args", default="", help="extra fit-supervised options")
    args = ap.parse_args()

    fractions = [float(x) for x in args.fractions.split(",")]
    tests = dict(t.split("=", 1) for t in args.test)
    encoders = dict(e.split("=", 1) for e in args.encoder)
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    fr = fraction_manifests(args.train, fractions, args.seed, args.work)
    for f, (p, nclips, ncrops) in fr.items():
        log(f"fraction {f:g} %: {nclips} clips, {ncrops} crops -> {p}")

    results = {"train": args.train, "train_sha256": sha256_file(args.train), "seed": args.seed,
               "fractions": {f"{f:g}": {"clips": fr[f][1], "crops": fr[f][2]} for f in fractions},
               "tests": {n: {"manifest": m, "sha256": sha256_file(m)} for n, m in tests.items()},
               "models": {}}
    jobs = [(name, "head", model) for name, model in encoders.items()]
    if args.supervised:
        jobs.append(("c", "supervised", None))
    th = ["--threads", str(args.threads)]
    for name, kind, model in jobs:
        cache = os.path.join(args.work, f"embcache-{name}")
        for f in fractions:
            tag = f"{name}-f{f:g}"
            fitted = os.path.join(args.work, f"{tag}.safetensors")
            if kind == "head":
                cmd = [args.clmrd, "fit-head", "--model", model, "--labels", fr[f][0], "--out", fitted,
                       "--cache", cache, "--tags", args.tags, "--json", "-q", *th, *args.head_args.split()]
            else:
                cmd = [args.clmrd, "fit-supervised", "--labels", fr[f][0], "--out", fitted, "--tags", args.tags,
                       "--json", "-q", *th, *args.supervised_args.split()]
            fit = run_json(cmd, os.path.join(args.work, f"{tag}-fit.json"), os.path.join(args.work, f"{tag}-fit.err"))
            entry = {"kind": kind, "encoder": model, "fraction": f, "fit": fit, "eval": {}}
            # The supervised models each have their own encoder: a shared cache would only grow.
            ecache = ["--cache", cache] if kind == "head" else []
            for tname, manifest in tests.items():
                ev = run_json([args.clmrd, "eval", "--model", fitted, "--labels", manifest, "--json", "-q", *th, *ecache],
                              os.path.join(args.work, f"{tag}-eval-{tname}.json"),
                              os.path.join(args.work, f"{tag}-eval-{tname}.err"))
                entry["eval"][tname] = ev
                log(f"{tag} on {tname}: ROC-AUC {ev['roc_auc']:.3f} PR-AUC {ev['pr_auc']:.3f}")
            results["models"][tag] = entry
            with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as fh:
                json.dump(results, fh, indent=1)

    lines = ["| model | labels | " + " | ".join(f"{t} ROC-AUC | {t} PR-AUC" for t in tests) + " |",
             "| --- | --- | " + " | ".join("--- | ---" for _ in tests) + " |"]
    for tag, e in results["models"].items():
        cells = " | ".join(f"{e['eval'][t]['roc_auc']:.3f} | {e['eval'][t]['pr_auc']:.3f}" for t in tests)
        frac = f"{e['fraction']:g}"
        crops = results["fractions"][frac]["crops"]
        lines.append(f"| {tag.split('-f')[0]} | {frac} % ({crops} crops) | {cells} |")
    with open(os.path.join(args.out, "table.md"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
