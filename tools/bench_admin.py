#!/usr/bin/python3
"""Measures what issue 5 asks: POST /v1/tag latency (p50/p99) idle vs while a fine-tuning job runs,
and the job's chunks/s in the service vs offline `clmrd pretrain` on the same pool, same batch and
same thread count. Everything runs side by side in one invocation (timings on the shared machine
are only comparable as ratios within a run).

  CLMRD_BUILD=build /usr/bin/python3 tools/bench_admin.py [--model M] [--requests 40] [--batch 4]

Tag requests use ?per_chunk=true, which is never served from the cache, so each one decodes and
runs inference. Prints one JSON object."""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "python"))
import requests  # noqa: E402
from api_helpers import CLMRD, TINY, Daemon, make_audio  # noqa: E402

TOKEN = "bench-token"
AUTH = {"Authorization": "Bearer " + TOKEN}


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def tag_latencies(d, data, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = requests.post(d.url("/v1/tag?per_chunk=true"), data=data, timeout=120)
        out.append((time.perf_counter() - t0) * 1e3)
        assert r.status_code == 200, r.text
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=TINY)
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--offline-steps", type=int, default=20)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench_admin_")
    songs = [make_audio(os.path.join(tmp, "s%d.flac" % i), 8.0, 170 + 71 * i, rate=22050)
             for i in range(8)]
    d = Daemon(os.path.join(tmp, "data"), "--model", a.model, "--workers", "1",
               "--finetune-min-tracks", "4", env={"CLMRD_ADMIN_TOKEN": TOKEN}).start()
    try:
        for p in songs:
            with open(p, "rb") as f:
                assert requests.post(d.url("/v1/tracks"), data=f.read(), timeout=120).status_code in (200, 201)
        with open(songs[0], "rb") as f:
            data = f.read()
        tag_latencies(d, data, 3)  # warm-up (worker context, page faults)
        idle = tag_latencies(d, data, a.requests)
        r = requests.post(d.url("/v1/admin/finetune"), headers=AUTH, timeout=30,
                          json={"steps": 1000000, "batch_size": a.batch, "tracks": "all"})
        jid = r.json()["job"]["id"]
        def step():
            return requests.get(d.url("/v1/admin/jobs/%d" % jid), headers=AUTH,
                                timeout=10).json()["job"]["step"]
        while step() < 2:
            time.sleep(0.2)
        # the job alone (no requests): rate from the step counter over a window
        s0, t0 = step(), time.perf_counter()
        time.sleep(6)
        s1, t1 = step(), time.perf_counter()
        alone = (s1 - s0) * 2 * a.batch / (t1 - t0)
        busy = tag_latencies(d, data, a.requests)
        job = requests.get(d.url("/v1/admin/jobs/%d" % jid), headers=AUTH, timeout=10).json()["job"]
        requests.delete(d.url("/v1/admin/jobs/%d" % jid), headers=AUTH, timeout=10)
        while requests.get(d.url("/v1/admin/jobs/%d" % jid), headers=AUTH,
                           timeout=10).json()["job"]["state"] == "running":
            time.sleep(0.2)
        pool = os.path.join(tmp, "data", "pool")
    finally:
        d.stop()
    # Offline: the same pool, batch and thread count (1, the service default).
    info = subprocess.run([CLMRD, "inspect", a.model], capture_output=True, text=True).stdout
    widths = re.search(r"widths 1 -> ([0-9 ->]+)", info).group(1).replace(" -> ", ",").strip()
    p = subprocess.run([CLMRD, "pretrain", "--data", pool, "--init", a.model, "--widths", widths,
                        "--out",
                        os.path.join(tmp, "off.safetensors"), "--steps", str(a.offline_steps),
                        "--batch", str(a.batch), "--threads", "1", "--checkpoint-every", "0"],
                       capture_output=True, text=True)
    rates = re.findall(r"chunks/s ([0-9.]+)", p.stderr)
    print(json.dumps({
        "model": os.path.basename(a.model), "requests": a.requests,
        "tag_idle_ms": {"p50": round(pct(idle, 50), 1), "p99": round(pct(idle, 99), 1)},
        "tag_during_job_ms": {"p50": round(pct(busy, 50), 1), "p99": round(pct(busy, 99), 1)},
        "job_chunks_per_s_alone": round(alone, 1),
        "job_chunks_per_s_cumulative_incl_requests": job["chunks_per_s"], "job_steps_done": job["step"],
        "offline_pretrain_chunks_per_s": float(rates[-1]) if rates else None,
        "offline_rc": p.returncode,
    }, indent=1))


if __name__ == "__main__":
    main()
