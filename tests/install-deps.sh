#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine (CI runs this as root).
set -euo pipefail
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends iproute2 nftables tcpdump iputils-ping procps iperf3 shellcheck systemd \
    passwd freeradius freeradius-utils \
    chromium curl openssl mmdebstrap dpkg-dev >/dev/null
  # Node.js for the browser test: Debian's packages unless a Node.js with npm is there already
  # (NodeSource's nodejs bundles npm and conflicts with Debian's npm package).
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
fi
# The browser test of the web UI (tests/web-e2e, tests/netns/web_ui.sh): playwright-core as
# locked in package-lock.json; it drives the system's chromium (no browser download).
if [ ! -d "$(dirname "$0")/web-e2e/node_modules" ] && command -v npm >/dev/null; then
  npm ci --prefix "$(dirname "$0")/web-e2e" --no-audit --no-fund
fi
# The Debian package (cargo deb -p roadgate; tests/package/deb.sh).
if ! cargo deb --version >/dev/null 2>&1; then
  cargo install cargo-deb --locked
fi
# The independent reference for the IKE key-derivation cross-check.
if ! python3 -c 'import cryptography' 2>/dev/null; then
  python3 -m pip install --quiet cryptography
fi
