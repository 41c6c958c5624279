"""`clmrd tag` end to end: real files made with ffmpeg, the committed tiny model, real decoding."""
import json
import math
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("CLMRD_BUILD", os.path.join(ROOT, "build"))
CLMRD = os.path.join(BUILD, "clmrd")
TINY = os.path.join(ROOT, "tests", "fixtures", "models", "tiny.safetensors")
CHUNK = 59049
RATE = 22050


def ffmpeg(out, seconds, extra=()):
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=frequency=440:sample_rate=44100:duration={seconds}", *extra, out], check=True)


def run_tag(*args):
    return subprocess.run([CLMRD, "tag", "--model", TINY, *args], capture_output=True, text=True, timeout=120)


def test_json_output_shape_and_consistency(tmp_path):
    wav = str(tmp_path / "a.wav")
    ffmpeg(wav, 7.0)
    r = run_tag("--json", "--per-chunk", "--embedding", wav)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert obj["file"] == wav
    assert abs(obj["duration_s"] - 7.0) < 0.05
    assert obj["chunks"] == int(7.0 * RATE) // CHUNK == 2
    tags = obj["tags"]
    assert len(tags) == 50
    scores = [t["score"] for t in tags]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert len({t["tag"] for t in tags}) == 50
    emb = obj["embedding"]
    assert abs(math.sqrt(sum(x * x for x in emb)) - 1.0) < 1e-4
    chunks = obj["per_chunk"]
    assert [c["start_s"] for c in chunks] == pytest.approx([0.0, CHUNK / RATE])
    # track score = mean of chunk scores (model tag order); the tag order is the model's.
    r2 = subprocess.run([CLMRD, "inspect", "--json", TINY], capture_output=True, text=True)
    order = json.loads(r2.stdout)["tags"] if r2.returncode == 0 else None
    if order:
        by_tag = {t["tag"]: t["score"] for t in tags}
        for i, name in enumerate(order):
            mean = sum(c["scores"][i] for c in chunks) / len(chunks)
            assert by_tag[name] == pytest.approx(mean, abs=2e-6)
    # track embedding = L2-normalised mean of the raw chunk embeddings
    d = len(emb)
    mean = [sum(c["embedding"][j] for c in chunks) / len(chunks) for j in range(d)]
    norm = math.sqrt(sum(x * x for x in mean))
    assert [x / norm for x in mean] == pytest.approx(emb, abs=1e-5)


def test_short_clip_is_padded_to_one_chunk(tmp_path):
    f = str(tmp_path / "short.flac")
    ffmpeg(f, 0.5)
    r = run_tag("--json", f)
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj["chunks"] == 1
    assert abs(obj["duration_s"] - 0.5) < 0.02


def test_failing_file_does_not_stop_the_others(tmp_path):
    good = str(tmp_path / "good.mp3")
    ffmpeg(good, 3.0)
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"<html>not audio</html>")
    missing = str(tmp_path / "missing.wav")
    r = run_tag("--json", str(bad), good, missing)
    assert r.returncode == 1
    objs = [json.loads(line) for line in r.stdout.strip().splitlines()]
    assert [o["file"] for o in objs] == [str(bad), good, missing]
    assert objs[0]["error"]["code"] == "not_audio"
    assert "tags" in objs[1] and len(objs[1]["tags"]) == 50
    assert "error" in objs[2]
    assert str(bad) in r.stderr and missing in r.stderr


def test_human_output_lists_top_tags(tmp_path):
    wav = str(tmp_path / "h.wav")
    ffmpeg(wav, 3.0)
    r = run_tag("--top", "5", wav)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith(wav) and "1 chunk" in lines[0]
    assert len(lines) == 6
    scores = [float(line.split()[-1]) for line in lines[1:]]
    assert scores == sorted(scores, reverse=True)


def test_usage_errors():
    r = subprocess.run([CLMRD, "tag"], capture_output=True, text=True)
    assert r.returncode == 2 and "no input files" in r.stderr
    r = subprocess.run([CLMRD, "tag", "--threads", "x", "f"], capture_output=True, text=True)
    assert r.returncode == 2 and "--threads" in r.stderr
    r = subprocess.run([CLMRD, "tag", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--per-chunk" in r.stdout


def test_missing_model_says_how_to_fix(tmp_path):
    r = subprocess.run([CLMRD, "tag", "--model", str(tmp_path / "nope.safetensors"), "x.wav"],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "nope.safetensors" in r.stderr
