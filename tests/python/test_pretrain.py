"""`clmrd pretrain` end to end: real audio made with sox, the real loader/augmentations, the oneDNN
trainer, checkpoints, resume, SIGINT and argument errors.

Small encoders keep it fast: SMALL = 7 layers 8..32 channels (729-sample chunks) and, for --init,
the committed tiny model's full-depth widths. The pool is nine 4 s clips of distinct timbres
(sine/square/sawtooth/triangle at 150 and 900 Hz, white noise), so views of one clip resemble
each other more than views of others and the contrastive loss can fall. Measured with LEARN
(batch 8 pairs, lr 1e-3, seed 0, 40 steps): mean loss of the first 5 steps 2.61, of the last 5
2.30 (log(15) = 2.71 is chance for 16 views); the test asks for a drop of at least 0.1.

Resume exactness: the trainer runs the same oneDNN primitives on the same batches (the loader's
batch k is a function of (seed, k)), and oneDNN's kernels are run-to-run deterministic on this
machine for a fixed thread count (tests/train/test_train_dnnl.c checks that), so N straight steps
and N/2 + resume + N/2 must give bit-identical weights, Adam moments and running statistics. On a
machine where that does not hold the test says so in its failure message.
"""
import json
import os
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("CLMRD_BUILD", os.path.join(ROOT, "build"))
CLMRD = os.path.join(BUILD, "clmrd")
TINY = os.path.join(ROOT, "tests", "fixtures", "models", "tiny.safetensors")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import safetensors_io  # noqa: E402

SMALL = "8,8,16,16,16,16,32"
TINY_WIDTHS = "8,8,8,12,12,12,12,12,12,16,16"
LEARN = ["--batch", "8", "--lr", "1e-3", "--seed", "0"]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    d = tmp_path_factory.mktemp("pool")
    for wave in ("sine", "square", "sawtooth", "triangle"):
        for f in (150, 900):
            subprocess.run(["sox", "-n", "-r", "22050", "-c", "1", "-b", "16",
                            str(d / f"{wave}{f}.flac"), "synth", "4", wave, str(f), "vol", "0.5"],
                           check=True)
    subprocess.run(["sox", "-n", "-r", "22050", "-c", "1", "-b", "16", str(d / "noise.flac"),
                    "synth", "4", "whitenoise", "vol", "0.3"], check=True)
    return d


def run(*args, ok=True, timeout=300):
    r = subprocess.run([CLMRD, "pretrain", *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def read_log(path):
    steps, events = [], []
    for line in open(path):
        o = json.loads(line)
        (events if "event" in o else steps).append(o)
    return steps, events


def read_ckpt(path):
    """Parses the checkpoint format of src/train/pretrain.h: magic, version, header, floats, hash."""
    b = open(path, "rb").read()
    assert b[:8] == b"CLMRCKPT"
    ver, hlen = struct.unpack("<II", b[8:16])
    hdr = json.loads(b[16:16 + hlen])
    body = np.frombuffer(b[16 + hlen:-8], dtype="<f4")
    n, s = hdr["n_params"], hdr["n_stats"]
    assert ver == 1 and body.size == 3 * n + s
    return hdr, {"params": body[:n], "m": body[n:2 * n], "v": body[2 * n:3 * n],
                 "stats": body[3 * n:]}


def test_loss_finite_and_decreasing(pool, tmp_path):
    log = tmp_path / "log.jsonl"
    r = run("--data", pool, "--out", tmp_path / "m.st", "--widths", SMALL, "--steps", 40,
            "--threads", 1, "--log", log, *LEARN)
    steps, events = read_log(log)
    losses = [s["loss"] for s in steps]
    assert [s["step"] for s in steps] == list(range(1, 41))
    assert all(np.isfinite(losses))
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < first - 0.1, (first, last, losses)
    assert events[0]["event"] == "start" and events[-1]["event"] == "done"
    # progress lines on a non-terminal: one plain line per step
    assert r.stderr.count("\nstep ") + r.stderr.startswith("step ") >= 40
    tensors, meta = safetensors_io.read(str(tmp_path / "m.st"))
    prov = json.loads(meta["pretrain"])
    assert prov["steps"] == 40 and prov["batch_pairs"] == 8 and prov["tracks"] == 9
    assert abs(prov["final_loss"] - losses[-1]) < 1e-5
    assert "fc.weight" not in tensors  # encoder only without --init
    assert meta["chunk_samples"] == "729"
    # the running statistics were trained (not left at the init values 0 / 1)
    assert np.abs(tensors["sequential.0.1.running_mean"]).max() > 0


def test_resume_is_exact(pool, tmp_path):
    common = ["--data", pool, "--threads", 1, "-q"]
    run(*common, "--out", tmp_path / "a.st", "--widths", SMALL, "--steps", 12, *LEARN,
        "--checkpoint-every", 0)
    run(*common, "--out", tmp_path / "b.st", "--widths", SMALL, "--steps", 6, *LEARN)
    hdr6, _ = read_ckpt(tmp_path / "b.st.ckpt")
    assert hdr6["step"] == 6
    run(*common, "--out", tmp_path / "b.st", "--resume", tmp_path / "b.st.ckpt", "--steps", 12)
    ha, a = read_ckpt(tmp_path / "a.st.ckpt")
    hb, b = read_ckpt(tmp_path / "b.st.ckpt")
    assert ha["step"] == hb["step"] == 12 and ha["batch_pairs"] == hb["batch_pairs"] == 8
    for k in a:
        assert np.array_equal(a[k], b[k]), (
            f"{k}: straight and resumed runs differ (max {np.abs(a[k] - b[k]).max()}); oneDNN "
            "kernels not run-to-run deterministic here?")
    ta, _ = safetensors_io.read(str(tmp_path / "a.st"))
    tb, mb = safetensors_io.read(str(tmp_path / "b.st"))
    assert all(np.array_equal(ta[k], tb[k]) for k in ta)
    assert json.loads(mb["pretrain"])["steps"] == 12


def test_periodic_checkpoints_and_steps_already_done(pool, tmp_path):
    log = tmp_path / "log.jsonl"
    run("--data", pool, "--out", tmp_path / "m.st", "--widths", SMALL, "--steps", 7, "--batch",
        2, "--checkpoint-every", 3, "--checkpoint", tmp_path / "c.ckpt", "--log", log, "-q")
    _, events = read_log(log)
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [3, 6]
    assert read_ckpt(tmp_path / "c.ckpt")[0]["step"] == 7
    assert not [p for p in os.listdir(tmp_path) if ".tmp." in p]  # no temporary left behind
    r = run("--data", pool, "--out", tmp_path / "m.st", "--resume", tmp_path / "c.ckpt",
            "--steps", 7, ok=False)
    assert r.returncode == 2 and "already done 7 steps" in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_writes_checkpoint_and_model(pool, tmp_path, sig):
    log = tmp_path / "log.jsonl"
    p = subprocess.Popen([CLMRD, "pretrain", "--data", str(pool), "--out", str(tmp_path / "m.st"),
                          "--widths", SMALL, "--batch", "2", "--steps", "1000000",
                          "--checkpoint-every", "0", "--threads", "1", "--log", str(log)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if log.exists() and len(read_log(log)[0]) >= 3:
            break
        time.sleep(0.05)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "interrupted" in err
    steps, events = read_log(log)
    hdr, _ = read_ckpt(tmp_path / "m.st.ckpt")
    assert hdr["step"] == steps[-1]["step"] >= 3
    assert events[-1]["event"] == "interrupted" and events[-1]["step"] == hdr["step"]
    assert hdr["extra"]["loss"] == pytest.approx(steps[-1]["loss"], rel=1e-6)
    _, meta = safetensors_io.read(str(tmp_path / "m.st"))
    assert int(meta["pretrain_steps"]) == hdr["step"]
    # and it resumes from there
    run("--data", pool, "--out", tmp_path / "m.st", "--resume", tmp_path / "m.st.ckpt",
        "--steps", hdr["step"] + 2, "-q", "--threads", 1)
    assert read_ckpt(tmp_path / "m.st.ckpt")[0]["step"] == hdr["step"] + 2


def test_init_keeps_encoder_start_and_head(pool, tmp_path):
    run("--data", pool, "--out", tmp_path / "m.st", "--init", TINY, "--widths", TINY_WIDTHS,
        "--steps", 2, "--batch", 2, "--threads", 1, "-q")
    t0, m0 = safetensors_io.read(TINY)
    t1, m1 = safetensors_io.read(str(tmp_path / "m.st"))
    assert json.loads(m1["tags"]) == json.loads(m0["tags"])
    assert np.array_equal(t0["fc.weight"], t1["fc.weight"])  # head copied as is
    # the encoder started from TINY: after 2 Adam steps of lr 3e-4 each weight moved <= ~6e-4
    d = np.abs(t0["sequential.1.0.weight"] - t1["sequential.1.0.weight"])
    assert 0 < d.max() < 1e-3
    assert json.loads(m1["pretrain"])["init"] == m1.get("parent_id")


def test_bad_arguments(pool, tmp_path):
    cases = [
        ([], 2, "--data and --out are required"),
        (["--data", pool, "--out", tmp_path / "m", "--batch", "0"], 2, "--batch"),
        (["--data", pool, "--out", tmp_path / "m", "--widths", "8,x"], 2, "--widths"),
        (["--data", pool, "--out", tmp_path / "m", "--widths", "8,8"], 2, "need 3..16 layers"),
        (["--data", pool, "--out", tmp_path / "m", "--steps", "-1"], 2, "--steps"),
        (["--data", pool, "--out", tmp_path / "m", "--bogus"], 2, "unknown option"),
        (["--data", tmp_path / "nope", "--out", tmp_path / "m"], 1, "nope"),
        (["--data", pool, "--out", tmp_path / "m", "--init", TINY], 1, "--widths matching"),
        (["--data", pool, "--out", tmp_path / "m", "--resume", TINY], 1,
         "not a clmrd pretraining checkpoint"),
        (["--data", pool, "--out", tmp_path / "m", "--resume", "x.ckpt", "--batch", "4"], 2,
         "come from the checkpoint"),
    ]
    for args, code, msg in cases:
        r = run(*args, ok=False)
        assert r.returncode == code, (args, r.stderr)
        assert msg in r.stderr, (args, r.stderr)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    r = run("--data", empty, "--out", tmp_path / "m", ok=False)
    assert r.returncode == 1 and "lists no file" in r.stderr


def test_corrupt_checkpoint_is_refused(pool, tmp_path):
    run("--data", pool, "--out", tmp_path / "m.st", "--widths", SMALL, "--steps", 1, "--batch",
        2, "-q")
    b = bytearray(open(tmp_path / "m.st.ckpt", "rb").read())
    b[len(b) // 2] ^= 0x40
    (tmp_path / "bad.ckpt").write_bytes(bytes(b))
    r = run("--data", pool, "--out", tmp_path / "m2.st", "--resume", tmp_path / "bad.ckpt",
            "--steps", 2, ok=False)
    assert r.returncode == 1 and "corrupt" in r.stderr
    (tmp_path / "short.ckpt").write_bytes(bytes(b[:100]))
    r = run("--data", pool, "--out", tmp_path / "m2.st", "--resume", tmp_path / "short.ckpt",
            "--steps", 2, ok=False)
    assert r.returncode == 1 and ("truncated" in r.stderr or "corrupt" in r.stderr)


def test_steps_zero_writes_the_initial_model(pool, tmp_path):
    """--steps 0: the PyTorch-initialised encoder, untouched (the paper's random-init baseline)."""
    run("--data", pool, "--out", tmp_path / "r.st", "--widths", SMALL, "--steps", 0, "-q")
    t, meta = safetensors_io.read(str(tmp_path / "r.st"))
    assert json.loads(meta["pretrain"])["steps"] == 0
    w = t["sequential.1.0.weight"]  # (16, 8, 3): kaiming_uniform bound sqrt(6 / 24) = 0.5
    assert np.abs(w).max() <= 0.5 and np.abs(w).max() > 0.4
    assert np.all(t["sequential.1.1.running_var"] == 1) and np.all(t["sequential.1.1.running_mean"] == 0)
    run("--data", pool, "--out", tmp_path / "i.st", "--init", TINY, "--widths", TINY_WIDTHS,
        "--steps", 0, "-q")
    t0, _ = safetensors_io.read(TINY)
    t1, _ = safetensors_io.read(str(tmp_path / "i.st"))
    assert all(np.array_equal(t0[k], t1[k]) for k in t0 if "num_batches" not in k)


def test_resume_on_another_pool_warns(pool, tmp_path):
    run("--data", pool, "--out", tmp_path / "m.st", "--widths", SMALL, "--steps", 1, "--batch",
        2, "-q")
    hdr, _ = read_ckpt(tmp_path / "m.st.ckpt")
    assert hdr["extra"]["tracks"] == 9 and len(hdr["extra"]["pool"]) == 16
    same = run("--data", pool, "--out", tmp_path / "m.st", "--resume", tmp_path / "m.st.ckpt",
               "--steps", 2)
    assert "differs" not in same.stderr
    fewer = tmp_path / "fewer.txt"
    fewer.write_text("".join(f"{p}\n" for p in sorted(pool.iterdir())[:-1]))
    other = run("--data", fewer, "--out", tmp_path / "m.st", "--resume", tmp_path / "m.st.ckpt",
                "--steps", 3)
    assert "the data pool differs from the checkpoint's (8 tracks now, 9 then)" in other.stderr
