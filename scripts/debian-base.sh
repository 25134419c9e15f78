#!/usr/bin/env bash
# Usage: scripts/debian-base.sh TAG [PACKAGE,PACKAGE,...]
# A Debian bookworm image for the demo nodes and the systemd test, made without any registry:
# debootstrap into a temporary directory, then `docker import`. Does nothing when TAG exists already.
# Needs root and Debian's package mirror (DEBIAN_MIRROR, default deb.debian.org).
set -euo pipefail
tag=${1:?usage: debian-base.sh TAG [PACKAGES]}
packages=${2:-}
label=${BASE_LABEL:-io.nodeagent.base=true}

if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "$tag: present"
    exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    echo "installing Debian's debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
root=$(mktemp -d /tmp/nodeagent-debootstrap.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "$tag: no local image; building it with debootstrap (bookworm, minbase${packages:+, +$packages}) — a few minutes"
include=()
[ -n "$packages" ] && include=(--include="$packages")
debootstrap --variant=minbase "${include[@]}" bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -n 30 "$root.log"; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
# keep the image small and let apt work inside it
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" --numeric-owner -c . | docker import --change 'CMD ["/bin/bash"]' --change "LABEL $label" - "$tag" >/dev/null
echo "$tag: built"
