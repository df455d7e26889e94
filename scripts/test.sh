#!/usr/bin/env bash
# The whole test suite, as README.md gives it and .ci/run calls it.
#
# It installs and starts what the tests need when it is missing (cargo-nextest,
# git, openssl, curl, sqlite3, moto's S3 server, Docker Engine and the test images,
# Debian's Chromium and playwright-core for the browser tests), then runs every test of the
# workspace with nextest, the doc tests, and the licence check.
# Run it from anywhere: it works in the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

missing=()
for tool in git openssl curl sqlite3; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v moto_server >/dev/null 2>&1; then
  log "installing moto (an S3-compatible server for the object storage tests)"
  python3 -m pip install -q 'moto[server]'
fi
if [[ ! -x /usr/bin/chromium ]]; then
  log "installing Chromium (the browser tests drive it headless)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if [[ ! -d web-tests/node_modules/playwright-core ||
      web-tests/package-lock.json -nt web-tests/node_modules/.package-lock.json ]]; then
  log "installing playwright-core (web-tests/, from its lock file; it uses /usr/bin/chromium)"
  (cd web-tests && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

log "Docker Engine and test images"
scripts/test-images.sh

log "tests (cargo nextest)"
cargo nextest run --workspace --no-fail-fast "$@"

log "doc tests"
cargo test --workspace --doc --quiet

log "dependency licences"
python3 scripts/check-licenses.py
