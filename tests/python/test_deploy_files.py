"""Static checks of the shipped deployment files: compose, Kubernetes, systemd, Dockerfile.

No compose engine or Kubernetes API server is available here (only Debian's archive), so the YAML is
parsed with python3-yaml and checked against a small schema of the keys each object needs and the
cross-references between them (selectors, volume and secret names, probe ports). Every CLMRD_*
variable and every `--flag` in the files is checked against the daemon's real configuration
table, as printed by the built binary's `clmrd serve --help` (which is generated from that table).
The systemd unit goes through `systemd-analyze verify`, with the binary path pointed at the build."""
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from api_helpers import CLMRD, ROOT  # noqa: E402

DEPLOY = os.path.join(ROOT, "deploy")
ROUTES_PROBED = {"/healthz", "/readyz"}
UID = 10001  # the Dockerfile's clmrd user


def read(*parts):
    with open(os.path.join(ROOT, *parts)) as f:
        return f.read()


@pytest.fixture(scope="module")
def config_table():
    """(flags, env names, defaults by flag) from the daemon's own help text."""
    if not os.path.exists(CLMRD):
        pytest.fail("clmrd binary not found at %s (set CLMRD_BUILD)" % CLMRD)
    text = subprocess.run([CLMRD, "serve", "--help"], capture_output=True, text=True, timeout=30).stdout
    rows = re.findall(r"^  --([a-z][a-z0-9-]*) .*\n\s+env (CLMRD_[A-Z0-9_]+); default '([^']*)'", text,
                      flags=re.M)
    assert len(rows) >= 10, text
    flags = {f for f, _, _ in rows} | {"config"}
    envs = {e for _, e, _ in rows} | {"CLMRD_CONFIG"}
    return flags, envs, {f: d for f, _, d in rows}


def parse_bytes(v):
    m = re.fullmatch(r"(\d+)([KMG]?)", v.strip(), flags=re.I)
    assert m, v
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2).upper()]


def clmrd_envs_in(text):
    return set(re.findall(r"\bCLMRD_[A-Z0-9_]+", text))


# --- compose ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose():
    """compose.yaml as an engine reads it with none of its optional variables set: every
    ${VAR:-default} becomes its default (a variable without a default would be an error)."""
    text = read("deploy", "compose.yaml")
    text = re.sub(r"\$\{[A-Z][A-Z0-9_]*:-([^}]*)\}", r"\1", text)
    assert "${" not in text and "$" not in text.replace("$$", ""), "unsupported interpolation"
    return yaml.safe_load(text)


def test_compose_schema(compose, config_table):
    _, envs, _ = config_table
    services = compose["services"]
    assert set(services) == {"clmrd", "nginx"}
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        if "build" in svc:
            ctx = os.path.normpath(os.path.join(DEPLOY, svc["build"]["context"]))
            assert os.path.isfile(os.path.join(ctx, svc["build"]["dockerfile"])), name
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if not src.startswith((".", "/")):
                assert src in compose["volumes"], "volume %s of %s is not declared" % (src, name)
        for sec in svc.get("secrets", []):
            assert sec in compose["secrets"], sec
        for port in svc.get("ports", []):
            assert re.fullmatch(r"(\d+\.\d+\.\d+\.\d+:)?\d+:\d+", str(port)), port
    c = services["clmrd"]
    assert set(c["environment"]) <= envs, set(c["environment"]) - envs
    assert c["environment"]["CLMRD_LISTEN"].startswith("0.0.0.0:")
    assert ":/data" in " ".join(c["volumes"])
    # the token file the daemon is told about is the one the secret is mounted as
    assert c["environment"]["CLMRD_ADMIN_TOKEN_FILE"] == "/run/secrets/" + c["secrets"][0]
    # nginx waits for a healthy daemon, so the daemon must have a healthcheck on a real route
    assert services["nginx"]["depends_on"]["clmrd"]["condition"] == "service_healthy"
    hc = " ".join(c["healthcheck"]["test"])
    assert any(r in hc for r in ROUTES_PROBED)
    assert c["stop_grace_period"]
    # clmrd is not published directly; only nginx is
    assert "ports" not in c and services["nginx"]["ports"]


def test_compose_nginx_conf_is_the_shipped_one(compose):
    """deploy/compose/nginx.conf must be deploy/nginx/clmrd.conf with only the upstream renamed."""
    shipped = read("deploy", "nginx", "clmrd.conf")
    expected = shipped.replace("server 127.0.0.1:8080", "server clmrd:8080")
    assert expected != shipped
    assert read("deploy", "compose", "nginx.conf") == expected
    assert "compose/nginx.conf" in read("deploy", "nginx", "Containerfile")


# --- Kubernetes ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def k8s():
    docs = [d for d in yaml.safe_load_all(read("deploy", "kubernetes", "clmrd.yaml")) if d]
    for d in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(d), d
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", d["metadata"]["name"])
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    k = {kind: ds[0] for kind, ds in by_kind.items()}
    k["Ingresses"] = by_kind.get("Ingress", [])
    return k


def test_k8s_objects_present(k8s):
    assert {"Service", "StatefulSet", "Ingress"} <= set(k8s)
    # issue 12: no Secret document (a re-apply would overwrite the real token with a placeholder)
    assert "Secret" not in k8s
    assert "change-me" not in read("deploy", "kubernetes", "clmrd.yaml")
    assert k8s["StatefulSet"]["apiVersion"] == "apps/v1"
    assert k8s["Ingress"]["apiVersion"] == "networking.k8s.io/v1"
    assert k8s["Service"]["apiVersion"] == "v1"


def test_k8s_statefulset(k8s, config_table):
    _, envs, _ = config_table
    sts = k8s["StatefulSet"]["spec"]
    assert sts["replicas"] == 1  # one SQLite writer
    assert sts["serviceName"] == k8s["Service"]["metadata"]["name"]
    labels = sts["template"]["metadata"]["labels"]
    assert sts["selector"]["matchLabels"].items() <= labels.items()
    assert k8s["Service"]["spec"]["selector"].items() <= labels.items()
    pod = sts["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == UID and pod["securityContext"]["fsGroup"] == UID
    (c,) = pod["containers"]
    assert c["image"]
    port_names = {p["name"]: p["containerPort"] for p in c["ports"]}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert set(env) <= envs, set(env) - envs
    assert env["CLMRD_LISTEN"] == "0.0.0.0:%d" % port_names["http"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        g = c[probe]["httpGet"]
        assert g["path"] in ROUTES_PROBED and g["port"] in port_names, probe
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    claims = {t["metadata"]["name"] for t in sts["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    for path, name in mounts.items():
        assert name in volumes or name in claims, name
    assert mounts["/data"] in claims and env["CLMRD_DATA_DIR"] == "/data"
    if sc.get("readOnlyRootFilesystem"):
        assert "/tmp" in mounts  # FFmpeg/SQLite temporary files need a writable /tmp
    # the admin token: the Secret is mounted where CLMRD_ADMIN_TOKEN_FILE points
    tok_dir, tok_key = os.path.split(env["CLMRD_ADMIN_TOKEN_FILE"])
    secret_vol = volumes[mounts[tok_dir]]["secret"]
    # the Secret is made with kubectl as the header says, with the key the mount expects
    header = read("deploy", "kubernetes", "clmrd.yaml")
    assert "kubectl create secret generic %s --from-file=%s=" % (secret_vol["secretName"], tok_key) in header
    assert k8s["StatefulSet"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 10


def test_k8s_ingress_matches_service_and_upload_limit(k8s, config_table):
    _, _, defaults = config_table
    ing = k8s["Ingress"]
    limit = parse_bytes(defaults["max-upload-bytes"])
    body = ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert parse_bytes(body) == limit
    svc = k8s["Service"]
    svc_ports = {p["name"] for p in svc["spec"]["ports"]}
    restricted = set()
    for i in k8s["Ingresses"]:
        allow = i["metadata"].get("annotations", {}).get("nginx.ingress.kubernetes.io/whitelist-source-range")
        for rule in i["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["pathType"] in ("Prefix", "Exact", "ImplementationSpecific")
                be = path["backend"]["service"]
                assert be["name"] == svc["metadata"]["name"] and be["port"]["name"] in svc_ports
                if allow:
                    restricted.add(path["path"])
                    assert all(re.fullmatch(r"\d+\.\d+\.\d+\.\d+/\d+", c) for c in allow.split(","))
    # the admin API is behind a source allow-list, like in deploy/nginx/clmrd.conf
    assert "/v1/admin" in restricted and "/metrics" in restricted and "/v1/config" in restricted


# --- nginx, Dockerfile, systemd --------------------------------------------------------------
def test_nginx_body_limit_matches_daemon_default(config_table):
    _, _, defaults = config_table
    m = re.search(r"^\s*client_max_body_size\s+(\w+);", read("deploy", "nginx", "clmrd.conf"), flags=re.M)
    assert m and parse_bytes(m.group(1)) == parse_bytes(defaults["max-upload-bytes"])


def test_dockerfile_env_and_user(config_table):
    _, envs, _ = config_table
    text = read("Dockerfile")
    assert clmrd_envs_in(text) <= envs, clmrd_envs_in(text) - envs
    assert re.search(r"^USER %d" % UID, text, flags=re.M)
    assert "CLMRD_LISTEN=0.0.0.0:8080" in text and re.search(r"^EXPOSE 8080$", text, flags=re.M)
    assert re.search(r"^HEALTHCHECK .*?/healthz", text, flags=re.M | re.S)


def systemd_unit():
    return read("deploy", "systemd", "clmrd.service")


def test_systemd_unit_keys(config_table):
    flags, envs, _ = config_table
    unit = systemd_unit()
    assert clmrd_envs_in(unit) <= envs, clmrd_envs_in(unit) - envs
    (exec_start,) = re.findall(r"^ExecStart=(.*)$", unit, flags=re.M)
    argv = exec_start.split()
    assert argv[1] == "serve"
    used = {a[2:].split("=")[0] for a in argv[2:] if a.startswith("--")}
    assert used and used <= flags, used - flags
    assert re.search(r"^User=clmrd$", unit, flags=re.M)


def test_systemd_analyze_verify(tmp_path):
    sa = shutil.which("systemd-analyze")
    if not sa:
        pytest.skip("systemd-analyze not installed (package systemd)")
    unit = systemd_unit()
    # the only change: the binary path, so verify can check that ExecStart is executable
    unit, n = re.subn(r"/usr/local/bin/clmrd\b", os.path.abspath(CLMRD), unit)
    assert n >= 1
    p = tmp_path / "clmrd.service"
    p.write_text(unit)
    r = subprocess.run([sa, "verify", str(p)], capture_output=True, text=True, timeout=60)
    # verify exits 0 on unknown keys and only warns: any output is a failure here
    assert r.returncode == 0 and r.stderr.strip() == "" and r.stdout.strip() == "", r.stderr + r.stdout


def test_grace_periods_cover_the_shutdown_drain(config_table, compose, k8s):
    """Issue 12: the daemon's drain (shutdown-grace-s) plus ~10 s for a fine-tuning job's
    checkpoint must fit in every shipped grace period, or SIGKILL cuts the drain short."""
    _, _, defaults = config_table
    need = float(defaults["shutdown-grace-s"]) + 10
    unit = read("deploy", "systemd", "clmrd.service")
    m = re.search(r"^TimeoutStopSec=(\d+)$", unit, flags=re.M)
    assert m and int(m.group(1)) >= need, unit
    g = compose["services"]["clmrd"]["stop_grace_period"]
    assert re.fullmatch(r"\d+s", g) and int(g[:-1]) >= need, g
    assert k8s["StatefulSet"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= need
