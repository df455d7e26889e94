#!/usr/bin/env bash
# Builds the images the end-to-end tests run jobs in. No registry is reachable
# here, so they are made from local files and imported, once per machine:
#   orrery-test/busybox:1     FROM scratch + a static busybox (no bash, no glibc)
#   orrery-test/debian:12     debootstrap --variant=minbase bookworm, with bash,
#                             git, curl, ca-certificates, python3 and pytest
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/start-docker.sh

need_pkg() {
  if ! dpkg -s "$1" >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "$1" >/dev/null
  fi
}

if ! docker image inspect orrery-test/busybox:1 >/dev/null 2>&1; then
  echo "== building orrery-test/busybox:1"
  need_pkg busybox-static
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/tmp" "$root/root" "$root/etc"
  chmod 1777 "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
  echo 'root:x:0:' >"$root/etc/group"
  tar -C "$root" -c . | docker import --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' - orrery-test/busybox:1 >/dev/null
  rm -rf "$root"
fi

if ! docker image inspect orrery-test/debian:12 >/dev/null 2>&1; then
  echo "== building orrery-test/debian:12 (debootstrap; a few minutes)"
  need_pkg debootstrap
  root=$(mktemp -d)
  debootstrap --variant=minbase --include=bash,git,ca-certificates,curl,python3,python3-pytest \
    bookworm "$root" http://deb.debian.org/debian >/tmp/orrery-debootstrap.log 2>&1 || {
      tail -30 /tmp/orrery-debootstrap.log >&2
      exit 1
    }
  rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/*
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' - orrery-test/debian:12 >/dev/null
  rm -rf "$root"
fi
echo "== test images ready"
