"""CLI polish of issue 17, end to end with real files and the committed tiny model: `clmrd tag -`
(stdin), --per-chunk without --json, --top with --json, --max-duration / CLMRD_MAX_DURATION_S,
"model" = id, truncated-file warnings, one format for bad options, exit-status lines in every
--help, and eval's advice on unknown tags."""
import json
import os
import subprocess

import pytest

from api_helpers import CLMRD, TINY, make_audio

COMMANDS = ["tag", "serve", "ingest", "inspect", "pretrain", "fit-head", "fit-supervised", "eval"]


def run(*args, env=None, stdin=None):
    e = dict(os.environ)
    e.pop("CLMRD_MAX_DURATION_S", None)
    e.update(env or {})
    return subprocess.run([CLMRD, *args], capture_output=True, text=True, timeout=180, env=e,
                          stdin=stdin)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("polish")
    full = make_audio(d / "full.flac", 30.0, 440, extra=("-ac", "2"))
    with open(full, "rb") as f:
        head = f.read(50000)
    trunc = d / "trunc.flac"
    trunc.write_bytes(head)  # the first 50 KB of the FLAC: its header still says 30 s
    return {"full": full, "trunc": str(trunc), "eight": make_audio(d / "eight.mp3", 8.0, 550)}


def tag_json(*args, **kw):
    r = run("tag", "--model", TINY, "--json", *args, **kw)
    return r, [json.loads(line) for line in r.stdout.splitlines()]


def test_stdin_gives_the_same_answer_as_the_file(files):
    _, [a] = tag_json(files["eight"])
    with open(files["eight"], "rb") as f:
        r, [b] = tag_json("-", stdin=f)
    assert r.returncode == 0, r.stderr
    assert b["file"] == "-" and b["tags"] == a["tags"] and b["duration_s"] == a["duration_s"]


def test_model_is_the_id_as_over_http(files):
    info = json.loads(run("inspect", "--json", TINY).stdout)
    _, [o] = tag_json(files["eight"])
    assert o["model"] == info["id"] and o["model_name"] == info["name"]
    assert "model_id" not in o


def test_top_applies_with_json_and_per_chunk_has_tag_names(files):
    _, [all_tags] = tag_json(files["eight"])
    assert len(all_tags["tags"]) == 50  # without --top: every tag
    _, [o] = tag_json("--top", "3", "--per-chunk", files["eight"])
    assert o["tags"] == all_tags["tags"][:3]
    assert len(o["per_chunk"]) == o["chunks"] == 2  # 8 s = 2.99 chunks of 59,049 samples
    for c in o["per_chunk"]:
        assert len(c["tags"]) == 3 and len(c["scores"]) == 50
        ranked = sorted(c["scores"], reverse=True)[:3]
        assert [t["score"] for t in c["tags"]] == pytest.approx(ranked, abs=1e-6)
        names = {t["tag"] for t in all_tags["tags"]}
        assert all(t["tag"] in names for t in c["tags"])


def test_per_chunk_text_output(files):
    r = run("tag", "--model", TINY, "--per-chunk", "--top", "2", files["eight"])
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.strip().startswith("chunk ")]
    assert len(lines) == 2
    assert lines[0].strip().startswith("chunk 0 (0.0-2.7 s): ")
    assert lines[1].strip().startswith("chunk 1 (2.7-5.4 s): ")
    assert all(line.count(",") == 1 for line in lines)  # two tags each


def test_max_duration_flag_and_environment(files):
    r, [o] = tag_json("--max-duration", "5", files["eight"])
    assert r.returncode == 1
    assert o["error"]["code"] == "audio_too_long"
    assert "--max-duration" in o["error"]["message"] and "CLMRD_MAX_DURATION_S" in o["error"]["message"]
    r, [o] = tag_json(files["eight"], env={"CLMRD_MAX_DURATION_S": "5"})
    assert r.returncode == 1 and o["error"]["code"] == "audio_too_long"
    r, [o] = tag_json(files["eight"], env={"CLMRD_MAX_DURATION_S": "20"})
    assert r.returncode == 0 and o["duration_s"] == pytest.approx(8.0, abs=0.05)
    r = run("tag", "--model", TINY, files["eight"], env={"CLMRD_MAX_DURATION_S": "soon"})
    assert r.returncode == 2 and "clmrd tag: CLMRD_MAX_DURATION_S: expected a number" in r.stderr


def test_truncated_file_warns(files):
    r, [o] = tag_json(files["trunc"])
    assert r.returncode == 0, r.stderr
    codes = {w["code"] for w in o["warnings"]}
    assert "truncated" in codes, o["warnings"]
    msg = next(w["message"] for w in o["warnings"] if w["code"] == "truncated")
    assert "of the 30.0 s the container declares" in msg
    assert o["duration_s"] < 10
    _, [full] = tag_json(files["full"])
    assert full["warnings"] == []
    text = run("tag", "--model", TINY, files["trunc"]).stdout
    assert "warning: decoded" in text


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_help_has_exit_status_and_bad_options_one_format(cmd):
    h = run(cmd, "--help")
    assert h.returncode == 0 and "Exit status:" in h.stdout, h.stdout[-300:]
    r = run(cmd, "--no-such-option", "x")
    assert r.returncode == 2
    assert r.stderr.strip().endswith(
        "clmrd %s: --no-such-option: unknown option (see 'clmrd %s --help')" % (cmd, cmd)), r.stderr


def test_top_level_help_has_exit_status():
    r = run("--help")
    assert r.returncode == 0 and "Exit status:" in r.stdout and "ingest" in r.stdout


def test_eval_does_not_advise_an_option_it_lacks(tmp_path, files):
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"path": files["eight"], "tags": ["not-a-tag"]}) + "\n")
    r = run("eval", "--model", TINY, "--labels", str(labels))
    assert r.returncode == 1
    assert 'unknown tag "not-a-tag"' in r.stderr and "--tags" not in r.stderr
    assert "clmrd inspect" in r.stderr
    r = run("fit-head", "--model", TINY, "--labels", str(labels), "--out", str(tmp_path / "o.safetensors"))
    assert r.returncode == 1 and "--tags FILE" in r.stderr  # fit-head has it
