"""Fixtures for the API tests (tests/python/test_api_*.py): a shared daemon, fresh daemons and audio
files made with ffmpeg. The daemon fixtures stop clmrd with SIGTERM and assert it exits 0."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from api_helpers import CLMRD, Daemon, make_audio  # noqa: E402


@pytest.fixture(scope="session")
def audio(tmp_path_factory):
    """Small audio files, each with distinct bytes (distinct sha256)."""
    d = tmp_path_factory.mktemp("audio")
    files = {
        "wav": make_audio(d / "a.wav", 6.0, 440),
        "mp3": make_audio(d / "b.mp3", 4.0, 660),
        "flac": make_audio(d / "c.flac", 3.0, 880, rate=22050),
        "ogg": make_audio(d / "d.ogg", 3.0, 330, extra=("-c:a", "libvorbis")),
        "short": make_audio(d / "short.wav", 0.5, 1000),
        "long": make_audio(d / "long.flac", 70.0, 500, rate=8000),  # over max-duration-s 60
    }
    for i in range(8):
        files["many%d" % i] = make_audio(d / ("m%d.wav" % i), 1.5, 200 + 97 * i, rate=22050)
    return files


def _need_binary():
    if not os.path.exists(CLMRD):
        pytest.fail("clmrd binary not found at %s (set CLMRD_BUILD)" % CLMRD)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """A daemon shared by a test module: 2 workers, 2 MiB uploads, 60 s audio at most."""
    _need_binary()
    d = Daemon(tmp_path_factory.mktemp("data") / "data", "--workers", "2",
               "--max-upload-bytes", "2M", "--max-duration-s", "60").start()
    yield d
    assert d.stop() == 0, d.logs()


@pytest.fixture
def make_daemon(tmp_path):
    """Factory for daemons with their own options; every one is stopped and must exit 0."""
    _need_binary()
    made = []

    def make(*args, data_dir=None, start=True, env=None):
        d = Daemon(data_dir or (tmp_path / ("data%d" % len(made))), *args, env=env)
        made.append(d)
        return d.start() if start else d

    yield make
    for d in made:
        if d.proc is not None:
            assert d.stop() == 0, d.logs()
