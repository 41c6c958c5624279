"""test_datasets_real.py - a small real run of tools/datasets/make_real.py (real recordings, labels = facts).

DESIGN: like test_datasets.py, the real package (sonic-pi-samples, 22 MB: drum loops, the drum_* kit,
guitar samples) is fetched with `apt-get download` into a temporary cache through
build_unlabelled.download; the test is skipped only when apt-get reports that the Debian archive is
unreachable (reason printed), and fails on any other download error. The run is limited to a few
dozen items, then the manifest format, the crop format, the labels against how each crop was made
(meta.jsonl), the licences, the summary and idempotence / seeded determinism of a re-run are checked.
The label rule and the copyright matching are also checked on hand-made inputs (no download).
"""
import json
import os
import shutil
import sys
import wave

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "datasets"))
import build_unlabelled as bu  # noqa: E402
from deb_helpers import download_or_skip  # noqa: E402
import make_real as mr  # noqa: E402

PKG = "sonic-pi-samples"
ITEMS = 30



def read_jsonl(path):
    return [json.loads(l) for l in open(path)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if not all(shutil.which(t) for t in ("ffmpeg", "dpkg-deb", "apt-get")):
        pytest.skip("ffmpeg, dpkg-deb and apt-get are required (scripts/install-deps.sh)")
    tmp = str(tmp_path_factory.mktemp("real"))
    cache, out = os.path.join(tmp, "cache"), os.path.join(tmp, "out")
    os.makedirs(cache)
    download_or_skip(cache, PKG)
    args = ["--out", out, "--cache", cache, "--packages", PKG, "--items", "480", "--limit", str(ITEMS)]
    assert mr.main(args) == 0
    return dict(out=out, args=args, man=read_jsonl(os.path.join(out, "manifest.jsonl")),
                meta=read_jsonl(os.path.join(out, "meta.jsonl")),
                summ=json.load(open(os.path.join(out, "summary.json"))))


def test_manifest_and_crop_format(run):
    man, meta = run["man"], run["meta"]
    assert len(man) >= ITEMS // 2 and len(man) == len(meta) <= ITEMS
    for r, m in zip(man, meta):
        assert set(r) == {"path", "tags"} and r["path"].startswith("crops/") and r["path"] == m["path"]
        with wave.open(os.path.join(run["out"], r["path"])) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (22050, 1, 2, 59049)
            x = np.frombuffer(w.readframes(59049), np.int16)
        assert 0 < np.abs(x).max() <= 32767 * 0.9, "peak-normalised to 0.89"
        assert set(r["tags"]) <= set(mr.MODEL_TAGS) and r["tags"] == sorted(set(r["tags"]))


def test_labels_are_facts_of_construction(run):
    fams = set()
    for m in run["meta"]:
        tags, act = set(m["tags"]), m["active"]
        fams.add(m["family"])
        drums = [a for a in act if a.startswith("drums:")]
        inst = [a for a in act if a.startswith("inst:")]
        assert set(mr.NO_VOICE) <= tags, "no source has a voice"
        assert not tags & {"vocal", "vocals", "voice", "singing", "choir", "sitar", "harp"}
        assert ("drums" in tags) == ("beat" in tags) == ("beats" in tags) == bool(drums), m
        assert ("guitar" in tags) == ("inst:guitar" in act), m  # the only pitched pool of this package
        assert ("solo" in tags) == (len(act) == 1 and len(inst) == 1), m
        if tags & {"fast", "slow"}:
            assert m["family"] in ("kit", "band") and m["tempo_class"] in tags, m
            lo, hi = (140, 180) if "fast" in tags else (56, 80)
            assert lo <= m["bpm"] <= hi, "make_labelled.py's tempo classes"
        assert m["packages"] == [PKG] and all(s["package"] == PKG for s in m["sources"])
        for s in m["sources"]:
            assert s["licence"] and s["copyright_file"] == "usr/share/doc/%s/copyright" % PKG
            name = os.path.basename(s["file"])
            if name.startswith(("guit_", "loop_amen", "drum_")):
                assert s["licence"] == "CC0" and "tail match" in s["licence_rule"], s
        for st in act:
            assert any(s["stem"] == st for s in m["sources"]), "every active stem names its recordings"
    assert {"loop", "kit", "solo", "band"} <= fams, fams  # duo needs two pools: not in this package


def test_summary_counts(run):
    summ, man = run["summ"], run["man"]
    counts = {}
    for r in man:
        for t in r["tags"]:
            counts[t] = counts.get(t, 0) + 1
    assert summ["tag_counts"] == counts and summ["crops"] == len(man) and summ["items"] == ITEMS
    assert set(summ["model_tags_without_positives"]) == set(mr.MODEL_TAGS) - set(counts)
    deb = bu.cached_deb(os.path.join(os.path.dirname(run["out"]), "cache"), PKG)
    assert summ["packages"] == {PKG: bu.deb_version(deb)}
    assert sum(summ["families"].values()) == len(man)


def test_rerun_is_idempotent_and_seeded(run):
    out = run["out"]
    files = ["manifest.jsonl", "meta.jsonl", "summary.json"] + [r["path"] for r in run["man"]]
    before = {f: (os.path.getmtime(os.path.join(out, f)), open(os.path.join(out, f), "rb").read()) for f in files}
    assert mr.main(run["args"]) == 0
    after = {f: (os.path.getmtime(os.path.join(out, f)), open(os.path.join(out, f), "rb").read()) for f in files}
    assert after == before, "a re-run rewrites nothing"
    # an item made again from its seed is byte-identical
    redo = run["man"][:3]
    for r in redo:
        os.remove(os.path.join(out, r["path"]))
    for i in range(ITEMS):
        p = os.path.join(out, "items", "%05d.json" % i)
        if any(x["path"] in [r["path"] for r in redo] for x in json.load(open(p))["rows"]):
            os.remove(p)
    assert mr.main(run["args"]) == 0
    for r in redo:
        assert open(os.path.join(out, r["path"]), "rb").read() == before[r["path"]][1]
    assert open(os.path.join(out, "manifest.jsonl"), "rb").read() == before["manifest.jsonl"][1]


def test_label_rule_matches_make_labelled():
    import random
    n = mr.CROP
    t = np.arange(n) / mr.SR
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    inst = dict(role="inst", name="p", tags=["piano"], onsets=[])
    drum = dict(role="drums", kind="loop", name="d", tags=list(mr.DRUM_TAGS), onsets=[])
    res = mr.label([(inst, tone)], random.Random(0))
    assert res[1] == sorted(["piano", "solo"] + mr.NO_VOICE)
    part = tone.copy()
    part[int(0.15 * n):] = 0  # active in ~15 % of the frames: neither present nor absent
    assert mr.label([(inst, part), (drum, tone[::-1].copy())], random.Random(0)) is None
    tiny = tone.copy()
    tiny[int(0.03 * n):] = 0  # ~3 %: absent, the crop is drums only
    res = mr.label([(inst, tiny), (drum, tone)], random.Random(0))
    assert res[1] == sorted(mr.DRUM_TAGS + mr.NO_VOICE) and len(res[0]) == n
    assert mr.label([(inst, np.zeros(n, np.float32))], random.Random(0)) is None


def test_copyright_tail_matching():
    paras = [(["*"], "MIT"), (["etc/samples/guit_em9.flac"], "CC0"),
             (["drumkits/circAfrique.h2drumkit", "drumkits/The?Black?Pearl?1.0.h2drumkit"], "CC-BY-SA-3.0")]
    assert mr.tail_match(paras, "usr/share/sonic-pi/samples/guit_em9.flac")[0] == "CC0"
    assert mr.tail_match(paras, "usr/share/sonic-pi/samples/guit_e_slide.flac") is None
    assert mr.tail_match(paras, "usr/share/hydrogen/data/drumkits/circAfrique v4/a.flac")[0] == "CC-BY-SA-3.0"
    assert mr.tail_match(paras, "usr/share/hydrogen/data/drumkits/The Black Pearl 1.0/k.wav")[0] == "CC-BY-SA-3.0"
    assert mr.tail_match(paras, "usr/share/hydrogen/data/drumkits/Other/k.wav") is None
