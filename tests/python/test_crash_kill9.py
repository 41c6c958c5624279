"""CI version of tools/crashtest/kill9_ingest.py: 5 kill -9 iterations during concurrent ingest
(the full run is 200: see docs/reliability.md). After every restart the database passes
PRAGMA integrity_check, every 2xx-acknowledged upload is present with its pool file, and the
pool holds no temp or orphan file."""
import os
import re
import subprocess
import sys

from api_helpers import BUILD, ROOT


def test_kill9_during_concurrent_ingest(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "crashtest", "kill9_ingest.py"),
                        "--build", BUILD, "--iterations", "5", "--clients", "4", "--min-kill-s", "0.5",
                        "--max-kill-s", "2.0",
                        "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    m = re.search(r"(\d+) iterations, (\d+) failed; (\d+) uploads acknowledged", out)
    assert m and m.group(1) == "5" and m.group(2) == "0", out[-2000:]
    assert len(re.findall(r"integrity ok", out)) == 5, out[-2000:]
    # the kills really interrupted work: some uploads were acknowledged, some were cut
    assert int(m.group(3)) > 0 and re.search(r"cut [1-9]", out), out[-2000:]
