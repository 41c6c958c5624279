"""deb_helpers.py - fetching real Debian packages in the dataset tests.

A test that needs a package from the archive skips only when apt-get says the archive cannot be
reached (the reason is printed); any other download failure fails the test.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools", "datasets"))
import build_unlabelled as bu  # noqa: E402

UNREACHABLE = ("Temporary failure", "Could not resolve", "Unable to connect", "Failed to fetch",
               "Network is unreachable", "Connection timed out", "Could not connect")


def download_or_skip(cache, pkg):
    deb, err = bu.download(cache, pkg)
    if deb:
        return deb
    if err and any(s in err for s in UNREACHABLE):
        msg = "Debian archive unreachable, cannot apt-get download %s: %s" % (pkg, err)
        print(msg)
        pytest.skip(msg)
    pytest.fail("apt-get download %s failed: %s" % (pkg, err))
