"""Print 'passed failed' for a meson testlog.json, counting TAP subtests where a test has them."""
import json
import re
import sys

passed = failed = 0
try:
    lines = open(sys.argv[1]).read().splitlines()
except OSError:
    lines = []
for line in lines:
    t = json.loads(line)
    ok = t.get("result") in ("OK", "EXPECTEDFAIL")
    sub_ok = sub_bad = 0
    for out in (t.get("stdout") or "").splitlines():
        if re.match(r"^ok \d+", out):
            sub_ok += 1
        elif re.match(r"^not ok \d+", out):
            sub_bad += 1
    if sub_ok + sub_bad == 0:
        passed += ok
        failed += not ok
    else:
        passed += sub_ok
        # a crash after some subtests still counts as a failure
        failed += sub_bad + (1 if (not ok and sub_bad == 0) else 0)
print(passed, failed)
