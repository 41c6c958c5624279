#!/usr/bin/python3
"""tag_policy.py - choose a model's per-tag decision thresholds and "trusted on real audio" flags,
and store them in the model file's metadata ("tag_policy", docs/model-format.md).

Usage:
  tag_policy.py --model IN.safetensors --val VAL/manifest.jsonl --real NAME=EVAL.json[,SUMMARY.json] [--real ...]
                --out OUT.safetensors --report REPORT.json [--clmrd build/clmrd]
                [--min-pos 20] [--min-neg 20] [--min-recordings 2] [--min-roc 0.85]
  tag_policy.py --table REPORT.json      # the model card's Markdown table

DESIGN
- Thresholds: per tag, the score threshold that maximises F1 of "score >= threshold" on the --val
  manifest's crops (scores from `clmrd tag --json --all`, one crop = one track); ties go to the
  higher threshold. The val set must not be a test set: for the default model it is make_labelled.py's
  "val" split (the training distribution, clips never used for training or testing). A tag without
  a positive or negative crop there gets no threshold (responses then carry decision null).
- Trust: the tag's ROC-AUC on REAL recordings, from `clmrd eval --json` outputs (--real NAME=FILE,
  e.g. make_real.py's instruments and make_vocal.py's voices). A set measures a tag when it has at
  least --min-pos positive and --min-neg negative crops for it, and (when the set's summary.json is
  given) its positives come from at least --min-recordings distinct source recordings: 45 crops cut
  from one cello recording say little about cellos. A tag is trusted when at least one
  real set measures it and its ROC-AUC is >= --min-roc on every set that measures it. Anything else
  (unmeasured, too few crops, or measured and poor) is untrusted, with the evidence saying which.
- The output model is the input with one metadata entry added or replaced; the tensor bytes are
  copied unchanged (checked), so scores are bit-identical and only the model id (sha256 of the file)
  changes. The report holds every number behind the choice.
"""
import argparse
import hashlib
import json
import os
import struct
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
KEY = "tag_policy"


def read_header(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]


def write_with_metadata(src, dst, key, value):
    """Copy src to dst with __metadata__[key] = value; tensor entries and data bytes unchanged."""
    header, data = read_header(src)
    header.setdefault("__metadata__", {})[key] = value
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # safetensors pads the header with spaces to 8-byte alignment
    tmp = dst + ".part"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)
    os.replace(tmp, dst)
    h2, d2 = read_header(dst)
    assert d2 == data and {k: v for k, v in h2.items() if k != "__metadata__"} == \
        {k: v for k, v in header.items() if k != "__metadata__"}, "tensors must be unchanged"


def model_tags(path):
    return json.loads(read_header(path)[0]["__metadata__"]["tags"])


def crop_scores(clmrd, model, manifest):
    """[(tags set, {tag: score})] for every crop of the manifest, via `clmrd tag --json --all`."""
    base = os.path.dirname(os.path.abspath(manifest))
    rows = [json.loads(l) for l in open(manifest) if l.strip()]
    out = []
    for i in range(0, len(rows), 200):
        part = rows[i:i + 200]
        files = [os.path.join(base, r["path"]) for r in part]
        r = subprocess.run([clmrd, "tag", "--json", "--all", "--model", model, *files], check=True,
                           stdout=subprocess.PIPE, text=True)
        got = {}
        for line in r.stdout.splitlines():
            o = json.loads(line)
            got[o["file"]] = {t["tag"]: t["score"] for t in o["tags"]}
        out += [(set(row["tags"]), got[f]) for row, f in zip(part, files)]
    return out


def best_threshold(pairs):
    """(threshold, f1, precision, recall) maximising F1 of score >= threshold; pairs = [(score, is_pos)]."""
    pos = sum(1 for _, y in pairs if y)
    if pos == 0 or pos == len(pairs):
        return None
    pairs = sorted(pairs, key=lambda p: -p[0])
    best, tp, fp = None, 0, 0
    for i, (s, y) in enumerate(pairs):
        tp += y
        fp += not y
        if i + 1 < len(pairs) and pairs[i + 1][0] == s:
            continue  # a threshold at s takes every crop scoring s
        prec, rec = tp / (tp + fp), tp / pos
        f1 = 2 * prec * rec / (prec + rec) if tp else 0.0
        if best is None or f1 > best[1] or (f1 == best[1] and s > best[0]):
            best = (s, f1, prec, rec)
    return best


def markdown(report):
    """The model card's tag-policy table from a report."""
    sets = sorted({n for t in report["tags"].values() for n in t["real"]})
    head = "| tag | trusted on real audio | " + " | ".join(
        "%s ROC-AUC (pos/neg crops, recordings)" % n for n in sets) + " | threshold | val F1 / P / R |"
    lines = [head, "|" + " --- |" * (4 + len(sets))]
    order = sorted(report["tags"], key=lambda t: (not report["tags"][t]["trusted"], t))
    for t in order:
        e = report["tags"][t]
        cells = []
        for n in sets:
            r = e["real"][n]
            if r["roc_auc"] is None:
                cells.append("-")
            else:
                rec = "" if r.get("recordings") is None else ", %d rec." % r["recordings"]
                cells.append("%.3f (%d/%d%s)" % (r["roc_auc"], r["positives"], r["negatives"], rec))
        v = e["val"]
        thr = "-" if e["threshold"] is None else "%.3f" % e["threshold"]
        f1 = "-" if v["f1"] is None else "%.2f / %.2f / %.2f" % (v["f1"], v["precision"], v["recall"])
        lines.append("| %s | %s | %s | %s | %s |" % (t, "**yes**" if e["trusted"] else "no", " | ".join(cells), thr, f1))
    return "\n".join(lines)


def main(argv=None):
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--table":
        print(markdown(json.load(open(sys.argv[2]))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--val", required=True, help="manifest of the threshold set (not a test set)")
    ap.add_argument("--real", action="append", default=[], help="NAME=clmrd eval --json output on real recordings")
    ap.add_argument("--out", required=True)
    ap.add_argument("--report", required=True)
    ap.add_argument("--clmrd", default=os.path.join(ROOT, "build", "clmrd"))
    ap.add_argument("--min-pos", type=int, default=20)
    ap.add_argument("--min-neg", type=int, default=20)
    ap.add_argument("--min-recordings", type=int, default=2)
    ap.add_argument("--min-roc", type=float, default=0.85)
    ap.add_argument("--val-name", default=None, help="how the report names the threshold set")
    ap.add_argument("--val-scores", default=None, help="cache file for the val crops' scores (reused when the "
                    "model and manifest bytes match)")
    args = ap.parse_args(argv)

    tags = model_tags(args.model)
    real, recs = {}, {}
    for spec in args.real:
        name, paths = spec.split("=", 1)
        path, _, summary = paths.partition(",")
        real[name] = json.load(open(path))
        if summary:
            recs[name] = json.load(open(summary))["recordings_per_tag"]
    crops = None
    msha = hashlib.sha256(open(args.model, "rb").read()).hexdigest()
    mansha = hashlib.sha256(open(args.val, "rb").read()).hexdigest()
    if args.val_scores and os.path.exists(args.val_scores):
        c = json.load(open(args.val_scores))
        if c.get("model_sha256") == msha and c.get("manifest_sha256") == mansha:
            crops = [(set(lab), sc) for lab, sc in c["crops"]]
    if crops is None:
        crops = crop_scores(args.clmrd, args.model, args.val)
        if args.val_scores:
            with open(args.val_scores, "w") as f:
                json.dump(dict(model_sha256=msha, manifest_sha256=mansha,
                               crops=[(sorted(lab), sc) for lab, sc in crops]), f)
    policy_tags, report_tags = {}, {}
    for t in tags:
        thr = best_threshold([(sc[t], t in lab) for lab, sc in crops])
        sets, measured, few = {}, [], []
        for name, ev in real.items():
            pt = ev["per_tag"].get(t, {})
            npos = pt.get("positives", 0)
            nneg = ev["tracks"] - npos
            roc = pt.get("roc_auc")
            nrec = recs[name].get(t, 0) if name in recs else None
            sets[name] = dict(positives=npos, negatives=nneg, recordings=nrec, roc_auc=roc, pr_auc=pt.get("pr_auc"))
            if npos >= args.min_pos and nneg >= args.min_neg and roc is not None:
                if nrec is not None and nrec < args.min_recordings:
                    few.append("%s: %d positive crops, all from %d recording%s" % (
                        name, npos, nrec, "" if nrec == 1 else "s"))
                else:
                    measured.append((name, roc, npos, nneg))
        trusted = bool(measured) and all(roc >= args.min_roc for _, roc, _, _ in measured)
        if measured:
            ev = "; ".join("%s ROC-AUC %.3f (%d+/%d-)" % m for m in measured)
            why = ev if trusted else ev + ": below %.2f" % args.min_roc
        else:
            why = "not measured on real audio (%s)" % ("; ".join(few) if few else
                                                       "fewer than %d positive and %d negative real crops" %
                                                       (args.min_pos, args.min_neg))
        entry = dict(trusted=trusted, threshold=round(thr[0], 6) if thr else None, evidence=why)
        policy_tags[t] = entry
        report_tags[t] = dict(entry, real=sets, val=dict(
            positives=sum(1 for lab, _ in crops if t in lab), crops=len(crops),
            f1=round(thr[1], 4) if thr else None, precision=round(thr[2], 4) if thr else None,
            recall=round(thr[3], 4) if thr else None))
    val_name = args.val_name or os.path.relpath(args.val, ROOT)
    rule = ("trusted = ROC-AUC >= %.2f on every real-recording set with >= %d positive and >= %d negative "
            "crops for the tag (positives from >= %d recordings), measured on at least one (%s)" % (
                args.min_roc, args.min_pos, args.min_neg, args.min_recordings, ", ".join(sorted(real))))
    thr_rule = "threshold = max F1 of score >= threshold on %s (%d crops)" % (val_name, len(crops))
    policy = dict(version=1, trust_rule=rule, threshold_rule=thr_rule, tags=policy_tags)
    write_with_metadata(args.model, args.out, KEY, json.dumps(policy, separators=(",", ":")))
    report = dict(model_in=os.path.basename(args.model), trust_rule=rule, threshold_rule=thr_rule,
                  trusted=[t for t in tags if policy_tags[t]["trusted"]],
                  untrusted=[t for t in tags if not policy_tags[t]["trusted"]], tags=report_tags)
    with open(args.report, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    print("trusted: %s" % ", ".join(report["trusted"]))
    print("untrusted: %s" % ", ".join(report["untrusted"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
