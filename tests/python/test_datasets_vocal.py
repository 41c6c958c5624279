"""test_datasets_vocal.py - a small real run of tools/datasets/make_vocal.py (real speech and guitar).

DESIGN: the four source packages (Fish Fillets NG Czech/Dutch dialogue, two Frets on Fire song packs;
130 MB) are fetched with `apt-get download` into a temporary cache like test_datasets_real.py does
(skipped only when apt-get says the archive is unreachable). The first items are generated and
checked against the committed manifest and SHA256SUMS (the crops the model card's "vocal" figures
come from, byte for byte), the labels against how each crop was made (meta.jsonl), the licence
records and the idempotence of a re-run. The label rule is also checked on hand-made stems.
"""
import hashlib
import json
import os
import random
import shutil
import sys

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "datasets"))
sys.path.insert(0, os.path.join(ROOT, "tools", "eval"))
from deb_helpers import download_or_skip  # noqa: E402
import make_vocal as mv  # noqa: E402
from reproduce_card import committed_sums  # noqa: E402

ITEMS = 12
COMMITTED = os.path.join(ROOT, "models", "eval", "labelled", "vocal")


def read_jsonl(path):
    return [json.loads(line) for line in open(path) if line.strip()]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if not all(shutil.which(t) for t in ("ffmpeg", "dpkg-deb", "apt-get")):
        pytest.skip("ffmpeg, dpkg-deb and apt-get are required (scripts/install-deps.sh)")
    tmp = str(tmp_path_factory.mktemp("vocal"))
    cache, out = os.path.join(tmp, "cache"), os.path.join(tmp, "out")
    os.makedirs(cache)
    for pkg in mv.PACKAGES:
        download_or_skip(cache, pkg)
    args = ["--out", out, "--cache", cache, "--limit", str(ITEMS)]
    assert mv.main(args) == 0
    return dict(out=out, args=args, man=read_jsonl(os.path.join(out, "manifest.jsonl")),
                meta=read_jsonl(os.path.join(out, "meta.jsonl")))


def test_regenerated_crops_match_the_committed_set(run):
    committed = {r["path"]: r["tags"] for r in read_jsonl(os.path.join(COMMITTED, "manifest.jsonl"))}
    sums = committed_sums()
    assert len(run["man"]) >= ITEMS // 2
    for r in run["man"]:
        assert committed.get(r["path"]) == r["tags"], r["path"]
        digest = hashlib.sha256(open(os.path.join(run["out"], r["path"]), "rb").read()).hexdigest()
        assert digest == sums["vocal/" + r["path"]], r["path"]


def test_labels_are_facts_of_construction(run):
    for m in run["meta"]:
        tags, act = set(m["tags"]), m["active"]
        speech = [a for a in act if a.startswith("speech:")]
        guitar = [a for a in act if a.startswith("guitar:")]
        assert bool(speech) == bool(tags & set(mv.VOICE_TAGS)) == (not tags & set(mv.NO_VOICE)), m
        assert set(mv.VOICE_TAGS) <= tags or not speech
        assert ("guitar" in tags) == bool(guitar)
        assert ("solo" in tags) == (act == guitar and len(guitar) == 1)
        assert not tags & {"singing", "choir", "choral", "male", "female", "man", "woman"}
        for s in m["sources"]:
            assert s["package"] in mv.PACKAGES and s["licence"] and s["copyright_file"]
            assert s["file"].endswith("guitar.ogg") if s["stem"].startswith("guitar:") else "/fillets-ng/sound/" in s["file"]


def test_rerun_is_idempotent(run):
    out = run["out"]
    files = ["manifest.jsonl", "meta.jsonl", "summary.json"] + [r["path"] for r in run["man"]]
    before = {f: open(os.path.join(out, f), "rb").read() for f in files}
    assert mv.main(run["args"]) == 0
    assert {f: open(os.path.join(out, f), "rb").read() for f in files} == before


def test_label_rule_on_hand_made_stems():
    rng = random.Random(1)
    t = np.arange(mv.CROP) / mv.SR
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    voice = dict(role="voice", name="speech:x", tags=list(mv.VOICE_TAGS))
    gtr = dict(role="inst", name="guitar:x", tags=["guitar"])
    mix, tags, act, _ = mv.label([(voice, tone.copy()), (gtr, tone.copy())], rng)
    assert tags == sorted(["guitar", "vocal", "vocals", "voice"])
    mix, tags, act, _ = mv.label([(gtr, tone.copy())], rng)
    assert tags == sorted(["guitar", "no vocal", "no vocals", "no voice", "solo"])
    assert abs(float(np.max(np.abs(mix))) - 0.89) < 1e-4
    # a voice present in only 10 % of the crop is neither present nor absent: the crop is dropped
    short = tone.copy()
    short[int(0.1 * mv.CROP):] = 0
    assert mv.label([(voice, short), (gtr, tone.copy())], rng) is None
