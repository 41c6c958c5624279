#!/usr/bin/python3
"""card_tables.py - the model card's tables, printed as Markdown from paper_table.py's outputs.

  card_tables.py WORK [--per-tag MODEL_TAG] [--card-json OUT]

WORK is paper_table.py's --work folder (it reads every NAME-fF-fit.json / -eval-SET.json there).
Prints: the macro table (one row per model and label fraction, ROC-AUC / PR-AUC per test set), the
per-tag table of MODEL_TAG on the whole test set next to the other models at the same fraction, and
its per-tag table on the real recordings. --card-json writes MODEL_TAG's eval summaries in the form
tools/eval/reproduce_card.py checks (models/eval/card.json).
"""
import argparse
import glob
import json
import os
import re

NAMES = {"a": "(a) random-init encoder + linear head", "b": "(b) CLMR encoder (ours) + linear head",
         "c": "(c) supervised SampleCNN"}
SETS = ["test", "timgm6mb", "freepats", "sf_gmbank", "opl3", "real"]


def load(work):
    runs = {}
    for path in glob.glob(os.path.join(work, "*-eval-*.json")):
        m = re.match(r"(\w+)-f([\d.]+)-eval-(\w+)\.json$", os.path.basename(path))
        if m:
            runs.setdefault((m.group(1), float(m.group(2))), {})[m.group(3)] = json.load(open(path))
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work")
    ap.add_argument("--per-tag", default="b-f100", help="model and fraction for the per-tag tables (default b-f100)")
    ap.add_argument("--card-json", help="write that model's results for reproduce_card.py")
    args = ap.parse_args()
    runs = load(args.work)
    crops = {}
    for f in glob.glob(os.path.join(args.work, "train_f*.jsonl")):
        crops[float(re.search(r"train_f([\d.]+)\.jsonl$", f).group(1))] = sum(1 for line in open(f) if line.strip())
    sets = [s for s in SETS if any(s in r for r in runs.values())]

    print("| model | labels | " + " | ".join(sets) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in sets) + " |")
    for (name, frac) in sorted(runs, key=lambda k: (k[0], k[1])):
        r = runs[(name, frac)]
        cells = [f"{r[s]['roc_auc']:.3f} / {r[s]['pr_auc']:.3f}" if s in r else "" for s in sets]
        print(f"| {NAMES.get(name, name)} | {frac:g} % ({crops.get(frac, '?')} crops) | " + " | ".join(cells) + " |")

    name, frac = args.per_tag.split("-f")
    frac = float(frac)
    others = sorted(n for (n, f) in runs if f == frac and n != name)
    for split in ("test", "real"):
        main_run = runs[(name, frac)].get(split)
        if not main_run:
            continue
        print(f"\nPer tag on {split} ({args.per_tag}; others at {frac:g} % of the labels), ROC-AUC / PR-AUC:\n")
        print("| " + " | ".join(["tag", "positives", args.per_tag] + [f"{o}-f{frac:g}" for o in others]) + " |")
        print("|" + " --- |" * (3 + len(others)))
        tags = sorted((t for t in main_run["per_tag"] if main_run["per_tag"][t]["roc_auc"] is not None),
                      key=lambda t: -main_run["per_tag"][t]["positives"])
        for t in tags:
            v = main_run["per_tag"][t]
            cells = []
            for o in others:
                w = runs[(o, frac)].get(split, {}).get("per_tag", {}).get(t)
                cells.append(f"{w['roc_auc']:.3f} / {w['pr_auc']:.3f}" if w and w["roc_auc"] is not None else "")
            print("| " + " | ".join([t, str(v["positives"]), f"{v['roc_auc']:.3f} / {v['pr_auc']:.3f}"] + cells) + " |")
        if main_run.get("excluded_tags"):
            print(f"\nExcluded on {split} (no positive or no negative crop): " + ", ".join(main_run["excluded_tags"]))

    if args.card_json:
        r = runs[(name, frac)]
        out = {"model_id": next(iter(r.values()))["model_id"],
               "eval": {s: {"roc_auc": r[s]["roc_auc"], "pr_auc": r[s]["pr_auc"], "tracks": r[s]["tracks"]} for s in r}}
        with open(args.card_json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
