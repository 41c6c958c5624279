"""tools/eval/tag_policy.py: thresholds by max F1, the trust rule, and a model whose tensors stay
bit-identical. End to end with the tiny fixture model, real audio files made with ffmpeg and the
real `clmrd tag`; the "real-audio" evaluations are hand-written clmrd-eval-shaped files, so every
branch of the rule (trusted, poor, too few crops, one recording, unmeasured) is exercised."""
import json
import os
import subprocess
import sys

from api_helpers import CLMRD, ROOT, TINY

sys.path.insert(0, os.path.join(ROOT, "tools", "eval"))
import tag_policy as tp  # noqa: E402


def test_best_threshold_maximises_f1():
    assert tp.best_threshold([(0.9, True), (0.8, True), (0.3, False), (0.1, False)])[:2] == (0.8, 1.0)
    thr, f1, p, r = tp.best_threshold([(0.9, True), (0.7, False), (0.6, True), (0.2, False)])
    assert thr == 0.6 and abs(f1 - 0.8) < 1e-12 and abs(p - 2 / 3) < 1e-12 and r == 1.0
    assert tp.best_threshold([(0.5, True), (0.4, True)]) is None  # no negative: no threshold
    assert tp.best_threshold([(0.5, False)]) is None
    # ties: a threshold at a score takes every crop with that score
    assert tp.best_threshold([(0.5, True), (0.5, False), (0.1, False)])[0] == 0.5


def test_tool_end_to_end(tmp_path):
    tags = json.loads(tp.read_header(TINY)[0]["__metadata__"]["tags"])
    rows = []
    for i, (freq, lab) in enumerate([(220, ["drums"]), (440, []), (880, ["drums", "piano"]), (1760, ["piano"])]):
        f = tmp_path / ("v%d.wav" % i)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                        "sine=frequency=%d:sample_rate=22050:duration=3" % freq, str(f)], check=True)
        rows.append(dict(path=f.name, tags=lab))
    man = tmp_path / "val.jsonl"
    man.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def ev(per_tag, tracks=100):
        return dict(tracks=tracks, per_tag={t: dict(roc_auc=a, pr_auc=0.5, positives=p) for t, (a, p) in per_tag.items()})
    real = tmp_path / "real.json"
    real.write_text(json.dumps(ev({"drums": (0.95, 40), "guitar": (0.70, 40), "piano": (0.99, 10),
                                   "violin": (0.99, 40), "cello": (0.99, 40)})))
    summ = tmp_path / "summary.json"
    summ.write_text(json.dumps(dict(recordings_per_tag={"drums": 5, "guitar": 5, "piano": 1, "violin": 3, "cello": 1})))
    voc = tmp_path / "vocal.json"
    voc.write_text(json.dumps(ev({"violin": (0.60, 50), "drums": (0.90, 30)})))
    out, rep = str(tmp_path / "m.safetensors"), str(tmp_path / "rep.json")
    assert tp.main(["--model", TINY, "--val", str(man), "--real", "real=%s,%s" % (real, summ),
                    "--real", "vocal=%s" % voc, "--out", out, "--report", rep, "--clmrd", CLMRD]) == 0
    report = json.load(open(rep))
    assert report["trusted"] == ["drums"]  # >= 0.85 wherever measured
    e = report["tags"]
    assert "below 0.85" in e["guitar"]["evidence"] and not e["guitar"]["trusted"]
    assert "below 0.85" in e["violin"]["evidence"]  # good on one set, poor on the other
    assert "1 recording" in e["cello"]["evidence"] and not e["cello"]["trusted"]
    assert "fewer than 20" in e["piano"]["evidence"]
    assert "not measured" in e["harp"]["evidence"]
    assert e["drums"]["threshold"] is not None and e["piano"]["threshold"] is not None
    assert e["guitar"]["threshold"] is None  # no positive on the val set
    # the written model: same tensors and data bytes, policy in the metadata, loadable by clmrd
    h0, d0 = tp.read_header(TINY)
    h1, d1 = tp.read_header(out)
    assert d1 == d0 and {k: v for k, v in h1.items() if k != "__metadata__"} == \
        {k: v for k, v in h0.items() if k != "__metadata__"}
    pol = json.loads(h1["__metadata__"]["tag_policy"])
    assert pol["version"] == 1 and set(pol["tags"]) == set(tags)
    r = subprocess.run([CLMRD, "tag", "--json", "--model", out, str(tmp_path / "v0.wav")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert [t["tag"] for t in json.loads(r.stdout)["tags"]] == ["drums"]
    assert "| drums | **yes** |" in tp.markdown(report)
