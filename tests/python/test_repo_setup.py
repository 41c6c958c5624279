"""The set-up promises of the README: `make run` installs only what running needs, `make test`
everything (the OpenAPI validator's Node.js included); LICENSE matches meson.build; data/ is
ignored. install-deps.sh runs for real with dpkg-query/apt-get/node/npm replaced by recorders on
PATH, as on a machine that has nothing installed."""
import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def packages_installed_by(tmp_path, *args):
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    log = tmp_path / "apt.log"
    (fake / "dpkg-query").write_text("#!/bin/sh\nexit 1\n")  # nothing is installed
    (fake / "apt-get").write_text('#!/bin/sh\necho "$@" >> %s\n' % log)
    (fake / "id").write_text("#!/bin/sh\necho 0\n")  # root: no sudo
    for f in ("dpkg-query", "apt-get", "id"):
        os.chmod(fake / f, 0o755)
    # node and npm absent: a PATH of the recorders and links to the few tools the script uses
    tools = tmp_path / "tools"
    tools.mkdir(exist_ok=True)
    for t in ("sh", "grep", "cat", "echo", "true", "[", "dirname"):
        src = subprocess.run(["sh", "-c", "command -v %s" % t], capture_output=True, text=True).stdout.strip()
        if src.startswith("/") and not (tools / t).exists():
            os.symlink(src, tools / t)
    env = {"PATH": "%s:%s" % (fake, tools)}
    if log.exists():
        log.unlink()
    r = subprocess.run(["sh", os.path.join(ROOT, "scripts", "install-deps.sh"), *args],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = log.read_text().splitlines()
    installs = [line for line in lines if line.split()[:1] == ["install"] or " install " in " " + line + " "]
    pkgs = set()
    for line in installs:
        pkgs |= {w for w in line.split() if not w.startswith("-") and w not in ("install", "DPkg::Lock::Timeout=600")}
    return pkgs


def test_make_run_installs_only_runtime_packages(tmp_path):
    run = packages_installed_by(tmp_path, "--runtime-only")
    full = packages_installed_by(tmp_path)
    assert {"libmicrohttpd-dev", "libdnnl-dev", "meson", "libcurl4-openssl-dev"} <= run
    for heavy in ("python3-torch", "clang", "nginx-light", "fluid-soundfont-gm", "festival", "nodejs", "npm"):
        assert heavy not in run and heavy in full, heavy
    assert run < full
    # make run uses it
    dry = subprocess.run(["make", "-n", "-C", ROOT, "run", "BUILD=build-does-not-exist"],
                         capture_output=True, text=True)
    assert "scripts/install-deps.sh --runtime-only" in dry.stdout, dry.stdout + dry.stderr
    assert not re.search(r"install-deps\.sh\s*$", dry.stdout, re.M)


def test_license_and_gitignore():
    with open(os.path.join(ROOT, "meson.build")) as f:
        assert "license : 'MIT'" in f.read()
    with open(os.path.join(ROOT, "LICENSE")) as f:
        text = f.read()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text
    r = subprocess.run(["git", "-C", ROOT, "check-ignore", "-q", "data/clmrd.db"])
    assert r.returncode == 0, "data/ is not ignored by git"
