"""Two daemons on one data directory: the second is refused at start with a clear error naming
the directory and the first one's pid; the first keeps serving; after the first stops (or is
killed with -9) the directory can be used again."""
import subprocess

import requests

from api_helpers import CLMRD, TINY, Daemon, free_port


def second_start(data):
    return subprocess.run([CLMRD, "serve", "--model", TINY, "--data-dir", str(data), "--listen",
                           "127.0.0.1:%d" % free_port(), "--log-format", "text"],
                          capture_output=True, text=True, timeout=60)


def test_second_daemon_on_the_same_data_dir_is_refused(make_daemon, tmp_path):
    data = tmp_path / "shared"
    d = make_daemon(data_dir=data)
    r = second_start(data)
    assert r.returncode == 1
    assert "is in use by another clmrd (pid %d)" % d.proc.pid in r.stderr, r.stderr
    assert str(data) in r.stderr
    assert requests.get(d.url("/readyz"), timeout=10).status_code == 200
    assert d.stop() == 0
    # free again after a clean stop ...
    d2 = make_daemon(data_dir=data)
    # ... and after kill -9 (the kernel drops the lock with the process)
    d2.proc.kill()
    d2.proc.wait()
    d2.proc = None
    d2.log.close()
    d3 = Daemon(data).start()
    assert d3.stop() == 0
