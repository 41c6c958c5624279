#!/bin/bash
# setup-podman.sh - make rootful podman usable on a Debian 12 host without a registry, for the
# container tests. Idempotent. Steps (see docs/deployment.md for why):
#  1. install podman, runc, debootstrap, podman-compose;
#  2. configure runc + cgroupfs and ulimits the sandbox can grant;
#  3. provide docker.io/library/debian:bookworm-slim built with debootstrap from the apt mirror,
#     cached as an OCI archive in $CLMR_IMAGE_CACHE (default /var/cache/clmrd).
set -euo pipefail
cache=${CLMR_IMAGE_CACHE:-/var/cache/clmrd}
base=docker.io/library/debian:bookworm-slim

need=""
for p in podman runc debootstrap podman-compose; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
  apt-get update -q -o DPkg::Lock::Timeout=600
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 $need
fi

mkdir -p /etc/containers
nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
pidmax=$(cat /proc/sys/kernel/pid_max)
[ "$nproc" = unlimited ] && nproc=$pidmax
[ "$nproc" -gt "$pidmax" ] && nproc=$pidmax
[ "$nofile" = unlimited ] && nofile=65536
cat > /etc/containers/containers.conf <<CONF
# written by clmrd deploy/podman/setup-podman.sh: crun cannot run on this host's cgroup layout
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF

if ! podman image exists "$base"; then
  mkdir -p "$cache"
  if [ ! -s "$cache/bookworm-slim.oci.tar" ]; then
    mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
    [ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list)
    root=$(mktemp -d)
    log="$cache/debootstrap.log"
    echo "setup-podman: debootstrap bookworm from $mirror (2-4 minutes)"
    debootstrap --variant=minbase bookworm "$root" "$mirror" >"$log" 2>&1 ||
      { tail -20 "$log"; rm -rf "$root"; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
      "$root"/usr/share/man/* "$root"/usr/share/locale/*
    tar -C "$root" -c . | podman import - "$base" >/dev/null
    rm -rf "$root"
    podman save --format oci-archive -o "$cache/bookworm-slim.oci.tar" "$base" >/dev/null
  else
    # The archive carries its name; tag what was loaded (never "the newest image") just in case.
    loaded=$(podman load -q -i "$cache/bookworm-slim.oci.tar" | sed -n 's/^Loaded image[^:]*: *//p' | head -n 1)
    podman image exists "$base" || podman tag "$loaded" "$base"
  fi
fi
podman image exists "$base" && echo "setup-podman: $base ready"
