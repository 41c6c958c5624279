"""The decoder cannot open files or sockets: playlist and indirection files of the bad-audio
corpus (HLS, ffconcat, SDP, DASH, SBG) that point at local files or network addresses are run
through `clmrd tag` and through the running daemon under strace, and the trace must show no
open of any referenced target and no socket()/connect() at all.

DESIGN: strace (Debian) records open/openat/connect/socket of every thread. Each trace also has a
positive control (an open the program must do: the CLI's input file, the daemon's pool temp file
during an ingest) so an empty or broken trace cannot pass.
"""
import os
import re
import signal
import subprocess
import time

import pytest
import requests

from api_helpers import CLMRD, ROOT, TINY

CORPUS = os.path.join(ROOT, "tests", "badaudio", "corpus")
INDIRECT = ("playlist.m3u8", "list.ffconcat", "session.sdp", "manifest.mpd", "beats.sbg")
# Everything the files above reference: /etc/passwd, /etc/hostname, and ffconcat's relative
# 'whole.wav' (which would resolve next to the playlist).
TARGETS = ("/etc/passwd", "/etc/hostname", "whole.wav")
TRACE = "trace=open,openat,openat2,connect,socket"


def violations(trace_text):
    bad = []
    for line in trace_text.splitlines():
        if re.search(r"\b(socket|connect)\(", line):
            bad.append(line)
        elif re.search(r"\bopen(at2?)?\(", line) and any(t in line for t in TARGETS):
            bad.append(line)
    return bad


def test_cli_decoder_opens_nothing_it_is_pointed_at(tmp_path):
    for name in INDIRECT:
        out = tmp_path / (name + ".trace")
        r = subprocess.run(["strace", "-f", "-qq", "-e", TRACE, "-o", str(out), CLMRD, "tag", "--model", TINY,
                            "--threads", "1", os.path.join(CORPUS, name)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1, (name, r.returncode, r.stderr[-500:])  # refused, not tagged
        t = out.read_text()
        assert name in t, (name, "positive control: the input file's own open is missing", t[-1000:])
        assert not violations(t), (name, violations(t))


def test_daemon_decoder_opens_nothing_it_is_pointed_at(make_daemon, tmp_path):
    d = make_daemon("--workers", "2")
    out = tmp_path / "daemon.trace"
    st = subprocess.Popen(["strace", "-f", "-qq", "-e", TRACE, "-o", str(out), "-p", str(d.proc.pid)],
                          stderr=subprocess.PIPE)
    try:
        # positive control first, so the corpus is only sent once strace is surely attached: an
        # ingest writes a pool temp file (an openat in the data directory). Distinct files, so
        # each one is a new track, until the trace shows one.
        controls = [os.path.join(CORPUS, "whole." + e) for e in ("flac", "wav", "mp3", "ogg", "aiff", "opus")]
        for c in controls:
            with open(c, "rb") as f:
                assert requests.post(d.url("/v1/tracks"), data=f.read(), timeout=60).status_code == 201
            deadline = time.time() + 5  # strace writes its log asynchronously: poll, briefly
            while not (out.exists() and ".flac.tmp." in out.read_text()) and time.time() < deadline:
                time.sleep(0.05)
            if out.exists() and ".flac.tmp." in out.read_text():
                break
        else:
            pytest.fail("strace never showed the pool temp file: %s" % st.stderr.read()[-500:])
        for name in INDIRECT:
            with open(os.path.join(CORPUS, name), "rb") as f:
                body = f.read()
            for route in ("/v1/tag", "/v1/tracks", "/v1/similar"):
                r = requests.post(d.url(route), data=body, timeout=60)
                assert r.status_code in (415, 422), (name, route, r.status_code, r.text)
    finally:
        st.send_signal(signal.SIGINT)  # detach
        st.wait(30)
    t = out.read_text()
    assert not violations(t), violations(t)


def test_the_check_itself_sees_opens_and_sockets(tmp_path):
    """Negative control: the same strace filter and matcher flag a program that does open a
    target and create a socket (so the two tests above cannot pass by matching nothing)."""
    out = tmp_path / "control.trace"
    subprocess.run(["strace", "-f", "-qq", "-e", TRACE, "-o", str(out), "/usr/bin/python3", "-c",
                    "import socket; open('/etc/hostname').read(); socket.socket().close()"], check=True)
    bad = violations(out.read_text())
    assert any("/etc/hostname" in b for b in bad) and any("socket(" in b for b in bad), bad
