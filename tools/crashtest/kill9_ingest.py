#!/usr/bin/python3
"""kill9_ingest.py - crash test of the catalogue: kill -9 the daemon at random moments during
concurrent ingest, restart it, and check that nothing acknowledged was lost and nothing is corrupt.

Usage: /usr/bin/python3 tools/crashtest/kill9_ingest.py [--build build] [--iterations 200]
           [--clients 4] [--seed N] [--min-kill-s 0] [--max-kill-s 1.5] [--data-dir DIR]
Prints one line per iteration and a summary; exit status 0 only if every check passed.

Each iteration: start `clmrd serve` on the SAME data directory, wait for /readyz (start-up runs
the pool sweep and fails unfinished jobs), verify, then let --clients threads POST distinct
generated WAVs to /v1/tracks, SIGKILL the daemon after a random --min-kill-s..--max-kill-s seconds, and run
`sqlite3 DB 'PRAGMA integrity_check'` on the stopped database. Checks after every restart:
  - integrity_check says exactly "ok";
  - every upload that was answered 2xx (in any earlier iteration) is GET-able (200) and its pool
    FLAC file exists;
  - the pool holds no temp file and no file without a track row, and every row's file exists.
The durability promised (docs/storage.md, docs/reliability.md) is synchronous=FULL: acknowledged
writes survive a process crash and a power loss; this test exercises the process-crash half.

DESIGN: the audio is made in Python (a sine at a random frequency plus seeded noise, 1 s at
22,050 Hz, 16-bit WAV) so every upload has distinct bytes (a distinct sha256 track id) and no
ffmpeg process is spawned per upload. The random seed is printed so a failure can be replayed.
"""
import argparse
import io
import math
import os
import random
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "tests", "fixtures", "models", "tiny.safetensors")


def make_wav(rng, seconds=1.0, rate=22050):
    n = int(seconds * rate)
    f = rng.uniform(100, 4000)
    pcm = struct.pack("<%dh" % n, *(int(12000 * math.sin(2 * math.pi * f * i / rate) +
                                          rng.randint(-800, 800)) for i in range(n)))
    hdr = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(pcm), b"WAVE", b"fmt ", 16, 1, 1, rate,
                      rate * 2, 2, 16, b"data", len(pcm))
    return hdr + pcm


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, timeout=30):
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Daemon:
    def __init__(self, clmrd, data_dir, log_path):
        self.clmrd, self.data_dir, self.log_path = clmrd, data_dir, log_path
        self.proc = None

    def start(self, timeout=60):
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        env = dict(os.environ)
        env.pop("CLMRD_MODEL", None)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([self.clmrd, "serve", "--model", TINY, "--data-dir", self.data_dir,
                                          "--listen", "127.0.0.1:%d" % self.port, "--workers", "2",
                                          "--queue-depth", "32"], stdout=log, stderr=log, env=env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("clmrd exited with %s (log %s)" % (self.proc.returncode, self.log_path))
            try:
                if http("GET", self.base + "/readyz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        self.proc.kill()
        raise RuntimeError("clmrd not ready in %d s (log %s)" % (timeout, self.log_path))

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def integrity(db):
    r = subprocess.run(["sqlite3", db, "PRAGMA integrity_check;"], capture_output=True, text=True, timeout=120)
    return (r.stdout + r.stderr).strip()


def check_restarted(d, acked, problems):
    """Checks on a freshly started daemon (start-up sweep done): acknowledged tracks, pool files."""
    pool = os.path.join(d.data_dir, "pool")
    for tid in sorted(acked):
        st, _ = http("GET", d.base + "/v1/tracks/" + tid)
        if st != 200:
            problems.append("acknowledged track %s: GET %d" % (tid, st))
        if not os.path.exists(os.path.join(pool, tid[:2], tid + ".flac")):
            problems.append("acknowledged track %s: no pool file" % tid)
    files = set()
    for sub in os.listdir(pool) if os.path.isdir(pool) else ():
        for name in os.listdir(os.path.join(pool, sub)):
            files.add("pool/%s/%s" % (sub, name))
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(d.data_dir, "clmrd.sqlite"), uri=True, timeout=30)
    try:
        rows = {p for (p,) in con.execute("SELECT audio_path FROM tracks")}
    finally:
        con.close()
    temps = [f for f in files if ".tmp" in f]
    orphans = [f for f in files - rows if ".tmp" not in f]
    missing = sorted(rows - files)
    if temps:
        problems.append("temp files left in the pool: %s" % temps[:5])
    if orphans:
        problems.append("pool files without a row: %s" % orphans[:5])
    if missing:
        problems.append("rows without a pool file: %s" % missing[:5])
    return len(rows)


def run(args):
    clmrd = os.path.join(os.path.abspath(args.build), "clmrd")
    if not os.path.exists(clmrd):
        sys.exit("no clmrd at %s" % clmrd)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    own_dir = args.data_dir is None
    work = tempfile.mkdtemp(prefix="clmr-kill9-") if own_dir else os.path.abspath(args.data_dir)
    data = os.path.join(work, "data")
    log_path = os.path.join(work, "clmrd.log")
    db = os.path.join(data, "clmrd.sqlite")
    print("kill9_ingest: seed %d, %d iterations, %d clients, data %s" % (seed, args.iterations, args.clients, data),
          flush=True)
    acked, lock = set(), threading.Lock()
    counter = [0]
    failures, total_acked, total_errors = 0, 0, 0
    t_start = time.time()
    d = Daemon(clmrd, data, log_path)
    for it in range(args.iterations):
        problems = []
        d.start()
        n_rows = check_restarted(d, acked, problems)
        stop = threading.Event()
        stats = {"ok": 0, "err": 0, "refused": 0}

        def client(k):
            crng = random.Random((seed << 20) ^ (it << 8) ^ k)
            while not stop.is_set():
                with lock:
                    counter[0] += 1
                body = make_wav(crng, seconds=crng.uniform(0.5, 1.5))
                try:
                    st, resp = http("POST", d.base + "/v1/tracks", body, timeout=30)
                except OSError:  # the daemon died under us: this upload was never acknowledged
                    with lock:
                        stats["err"] += 1
                    return
                if st in (200, 201):
                    import json
                    with lock:
                        acked.add(json.loads(resp)["id"])
                        stats["ok"] += 1
                elif st == 503:
                    with lock:
                        stats["refused"] += 1
                else:
                    with lock:
                        problems.append("unexpected status %d: %s" % (st, resp[:200]))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(args.min_kill_s, args.max_kill_s))
        d.kill9()
        stop.set()
        for t in threads:
            t.join(60)
        ic = integrity(db)
        if ic != "ok":
            problems.append("integrity_check: %s" % ic[:300])
        total_acked += stats["ok"]
        total_errors += stats["err"]
        print("iter %3d: rows before %d, acked %d, cut %d, 503 %d, integrity %s%s" % (
            it + 1, n_rows, stats["ok"], stats["err"], stats["refused"], ic[:20],
            "" if not problems else " FAIL: " + "; ".join(problems)), flush=True)
        if problems:
            failures += 1
            if args.stop_on_failure:
                break
    # a final restart: everything acknowledged in the last iteration must be there too
    problems = []
    d.start()
    n_rows = check_restarted(d, acked, problems)
    rc = d.stop()
    if rc != 0:
        problems.append("final SIGTERM exit status %s" % rc)
    ic = integrity(db)
    if ic != "ok":
        problems.append("final integrity_check: %s" % ic[:300])
    if problems:
        failures += 1
        print("final check FAIL: " + "; ".join(problems))
    # how often a kill landed between the pool write and the row commit (the sweep's log line)
    import re
    with open(log_path, errors="replace") as f:
        swept = sum(int(m) for m in re.findall(r"removed (\d+) orphan files", f.read()))
    print("kill9_ingest: %d iterations, %d failed; %d uploads acknowledged (all present: %s), %d cut by "
          "the kill, %d orphan pool files removed by start-up sweeps, %d rows at the end, %.0f s (seed %d)" % (
              args.iterations, failures, total_acked, "yes" if not failures else "see above", total_errors,
              swept, n_rows, time.time() - t_start, seed))
    if own_dir and not failures and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    elif failures:
        print("data and log kept in %s" % work)
    return 0 if failures == 0 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--min-kill-s", type=float, default=0.0)
    ap.add_argument("--max-kill-s", type=float, default=1.5)
    ap.add_argument("--data-dir", help="work directory (kept); default: a temporary one")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    ap.add_argument("--stop-on-failure", action="store_true")
    sys.exit(run(ap.parse_args()))


if __name__ == "__main__":
    main()
