#!/usr/bin/env bash
# Makes sure a Docker Engine answers: installs Debian's docker.io when missing
# and starts dockerd in the background when no daemon runs. Idempotent.
set -euo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "== installing docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io >/dev/null
fi
echo "== starting dockerd"
nohup dockerd >/tmp/orrery-dockerd.log 2>&1 &
# Wait for the daemon with a deadline.
for _ in $(seq 1 120); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 0.5
done
echo "dockerd did not start; see /tmp/orrery-dockerd.log" >&2
tail -20 /tmp/orrery-dockerd.log >&2 || true
exit 1
