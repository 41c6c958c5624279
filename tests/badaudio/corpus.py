"""corpus.py - the bad-audio corpus for replays from Python (the HTTP replay in tests/python).

Usage from a test:
    from corpus import cases          # with tests/badaudio on sys.path
    for c in cases(big_dir=tmp_path):  # big_dir: generate bombs/cover art there (or None: skip them)
        c["path"], c["expect"], c["mime"], c["why"]

Or from a shell: /usr/bin/python3 tests/badaudio/corpus.py [BIG_DIR]  prints TSV lines
    path <TAB> expected code name or ok <TAB> mime

DESIGN: expected.json is the one specification (the C replay reads it through
badaudio_corpus.h); this only resolves paths and runs make_corpus.py --big when asked.
The expected codes are decoder error names; the HTTP status for each is the service's mapping
(src/http/errors.c), so an HTTP replay checks status = that mapping and body.error.code = expect.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def cases(big_dir=None):
    with open(os.path.join(HERE, "expected.json")) as f:
        spec = json.load(f)
    gen = [e for e in spec["files"] if e.get("generated")]
    if big_dir is not None and gen and not all(
            os.path.exists(os.path.join(str(big_dir), e["name"])) for e in gen):
        subprocess.run([sys.executable, os.path.join(HERE, "make_corpus.py"), "--big",
                        str(big_dir)], check=True)
    out = []
    for e in spec["files"]:
        if e.get("generated") and big_dir is None:
            continue
        d = str(big_dir) if e.get("generated") else os.path.join(HERE, "corpus")
        out.append(dict(e, path=os.path.join(d, e["name"])))
    return out


if __name__ == "__main__":
    for c in cases(sys.argv[1] if len(sys.argv) > 1 else None):
        print("%s\t%s\t%s" % (c["path"], c["expect"], c["mime"]))
