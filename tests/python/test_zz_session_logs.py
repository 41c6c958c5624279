"""Log hygiene over the WHOLE test session: every daemon started by the API tests writes JSON
lines (api_helpers.Daemon sets CLMRD_LOG_FORMAT=json), and this module - named to run last -
reads every clmrd log under the session's temporary directory. It also starts its own daemon
with an admin token and sends it tokens in every place a client might put one, so the check is
meaningful when run alone.

Checks: no secret (admin tokens used by the tests, Authorization values, tokens sent in query
strings) appears in any line; every line written while serving a request (the access line and
handler errors) carries that request's id; a line without a request id comes only from the
start-up, shut-down and background functions listed in BACKGROUND.
"""
import glob
import json
import os
import re

import requests

from api_helpers import make_audio

TOKEN = "zz-session-admin-token-9876543210"
# Secrets the test modules send (test_api_admin.py, test_api_service.py, test_nginx.py, this one).
SECRETS = (TOKEN, "s3cret-admin-token-0123456789-Zq3kP9vX2m", "hunter2", "filetoken123-Zq3kP9vX2mW8nR4tY6uB1cD5", "Bearer ")
# Functions that log outside any request (start-up, shutdown, the maintenance thread, background
# jobs and re-embedding, libmicrohttpd's own messages), so they have no request id to write.
BACKGROUND = {"clmr_cli_serve", "clmr__rollover_open", "clmr__rollover_boot_replace",
              "clmr__rollover_open_index", "reembed_main", "clmr__rollover_activate", "mhd_logger",
              "maint_main", "clmr_server_shutdown", "clmr__admin_open", "job_progress", "job_main",
              "clmr__routes_open", "clmr__auth_open", "clmr__auth_refresh",
              "clmr_http_infer_configure", "clmr__rollover_preload"}


def exercise(make_daemon, tmp_path):
    d = make_daemon("--admin-token", TOKEN, "--log-level", "debug")
    wav = open(make_audio(tmp_path / "zz.wav", 1.0, 500), "rb").read()
    auth = {"Authorization": "Bearer " + TOKEN}
    requests.get(d.url("/v1/admin/jobs"), headers=auth)
    requests.get(d.url("/v1/admin/jobs"), headers={"Authorization": "Bearer hunter2"})
    requests.get(d.url("/v1/admin/jobs?token=" + TOKEN))
    requests.get(d.url("/v1/tags?access_token=" + TOKEN), headers={"Cookie": "session=" + TOKEN})
    requests.post(d.url("/v1/tag"), data=wav, headers={"X-Api-Key": TOKEN})
    requests.post(d.url("/v1/tracks?title=" + TOKEN), data=wav)
    requests.post(d.url("/v1/tag"), data=b"not audio at all")
    requests.post(d.url("/v1/search"), data=b"{")
    requests.get(d.url("/v1/nope"))  # (paths are logged by design: tokens never go there)
    assert d.stop() == 0


TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info |warn |error) ")


def exercise_text(make_daemon):
    """A text-format daemon sent paths with encoded line breaks and escape sequences: each log
    call must stay one line (issue 12: %0A in a path used to start a forged line)."""
    d = make_daemon("--log-format", "text", "--admin-token", TOKEN)
    forged = "/v1/x%0A2026-01-01T00:00:00.000Z%20error%20[forged]%20admin:%20token%20leaked%0D%1B[2J"
    requests.get(d.url(forged))
    requests.get(d.url("/v1/tracks/" + "a" * 63 + "%0Ax"))
    requests.get(d.url("/v1/admin/jobs"), headers={"Authorization": "Bearer " + TOKEN})
    assert d.stop() == 0
    with open(d.log_path, "rb") as f:
        text = f.read().decode(errors="replace")
    lines = text.splitlines()
    assert lines and "\x1b" not in text and "\r" not in text
    bad = [l for l in lines if not TEXT_LINE.match(l) and "clmrd" not in l[:6]]
    assert not bad, bad[:5]
    assert not any(l.startswith("2026-01-01T00:00:00.000Z") for l in lines)
    assert any("\\n2026-01-01T00:00:00.000Z error [forged]" in l for l in lines), text[-2000:]
    assert TOKEN not in text


def test_every_daemon_log_of_the_session(make_daemon, tmp_path, tmp_path_factory):
    exercise_text(make_daemon)
    exercise(make_daemon, tmp_path)
    base = str(tmp_path_factory.getbasetemp())
    paths = sorted(set(glob.glob(os.path.join(base, "**", "clmrd*.log"), recursive=True)))
    assert paths, base
    leaks, no_rid, json_lines, access = [], [], 0, 0
    for p in paths:
        with open(p, "rb") as f:
            text = f.read().decode(errors="replace")
        for line in text.splitlines():
            for s in SECRETS:
                if s in line:
                    leaks.append((os.path.basename(p), s, line[:200]))
            if not line.startswith("{"):
                continue  # a text-format daemon (a test asked for it) or a tool's message
            try:
                j = json.loads(line)
            except ValueError:
                leaks.append((os.path.basename(p), "not JSON", line[:200]))
                continue
            json_lines += 1
            if " -> " in j.get("msg", ""):
                access += 1
            if not j.get("request_id") and j.get("func") not in BACKGROUND:
                no_rid.append((os.path.basename(p), j.get("func"), j.get("msg", "")[:120]))
    print("session logs: %d files, %d JSON lines, %d access lines" % (len(paths), json_lines, access))
    assert not leaks, leaks[:10]
    assert not no_rid, no_rid[:10]
    assert access >= 9 and json_lines > access
