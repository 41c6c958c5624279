"""Helpers for the API tests: start the REAL clmrd binary on a free loopback port, make audio
files with ffmpeg, small HTTP helpers. Used through the fixtures in conftest.py."""
import os
import signal
import socket
import subprocess
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("CLMRD_BUILD", os.path.join(ROOT, "build"))
CLMRD = os.path.join(BUILD, "clmrd")
TINY = os.path.join(ROOT, "tests", "fixtures", "models", "tiny.safetensors")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """One clmrd serve process. start() waits for /readyz; stop() sends SIGTERM and returns the
    exit status (callers assert it is 0)."""

    def __init__(self, data_dir, *args, env=None, cwd=None):
        self.data_dir = str(data_dir)
        self.args = list(args)
        self.env = env
        self.cwd = cwd  # the daemon's working directory (a relative data_dir is relative to it)
        self.proc = None
        self.port = None
        where = os.path.join(str(cwd), self.data_dir) if cwd else self.data_dir
        self.log_path = os.path.join(os.path.dirname(os.path.abspath(where)),
                                     "clmrd-%s.log" % os.path.basename(self.data_dir))

    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.port

    def url(self, path):
        return self.base + path

    def start(self, timeout=30):
        self.port = free_port()
        env = dict(os.environ)
        env.pop("CLMRD_MODEL", None)
        # JSON log lines for every daemon of the test session, so test_zz_session_logs.py can
        # check them all (request ids, no secrets); a test's own --log-format flag wins.
        env.setdefault("CLMRD_LOG_FORMAT", "json")
        # Tests stop daemons that may still be decoding long uploads on a loaded machine: let the
        # drain wait as long as a request may take (the shipped default, 25 s, is sized for the
        # deploy files' grace periods; test_api_limits checks that it is honoured).
        env.setdefault("CLMRD_SHUTDOWN_GRACE_S", "130")
        if self.env:
            env.update(self.env)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([CLMRD, "serve", "--model", TINY, "--data-dir", self.data_dir,
                                      "--listen", "127.0.0.1:%d" % self.port, *self.args],
                                     stdout=self.log, stderr=self.log, env=env, cwd=self.cwd)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("clmrd exited with %s:\n%s" % (self.proc.returncode, self.logs()))
            try:
                if requests.get(self.url("/readyz"), timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.proc.kill()
        raise RuntimeError("clmrd not ready within %ss:\n%s" % (timeout, self.logs()))

    def stop(self, timeout=60):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        self.log.close()
        return rc

    def logs(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def metric(self, name, **labels):
        """Value of one Prometheus sample (0 when absent)."""
        text = requests.get(self.url("/metrics"), timeout=10).text
        want = name + ("{" + ",".join('%s="%s"' % kv for kv in labels.items()) + "}" if labels else "")
        for line in text.splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return 0.0


def make_audio(path, seconds, freq=440, rate=44100, extra=()):
    """A sine tone written by ffmpeg; the format follows the file extension."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "sine=frequency=%s:sample_rate=%d:duration=%s" % (freq, rate, seconds), *extra,
                    str(path)], check=True)
    return str(path)


def error_of(r):
    """The machine code of an error answer, asserting the error body shape."""
    body = r.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    return body["error"]["code"]
