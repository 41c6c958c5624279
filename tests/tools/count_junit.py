"""Print 'passed failed' for a pytest junit xml file (skips count as neither)."""
import sys
import xml.etree.ElementTree as ET

p = f = 0
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    kinds = {c.tag for c in case}
    if kinds & {"failure", "error"}:
        f += 1
    elif "skipped" in kinds:
        continue
    else:
        p += 1
print(p, f)
