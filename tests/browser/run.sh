#!/usr/bin/env bash
# The dashboard in a real browser: installs Debian's Chromium and Playwright
# for Python (never Playwright's own browser download), then runs
# dashboard_test.py against the bazaar binary and the built components.
#
# Expects the components built (scripts/test does that first); uses
# target/debug/bazaar (under CARGO_TARGET_DIR when set), built with
# `cargo build -p bazaar` only when it is
# missing or older than a file under host/ (scripts/test has built it). Set
# BAZAAR_BIN to test another binary, BAZAAR_KEEP_FAILED=1 to keep the temp
# dir of a failed run.
set -euo pipefail
cd "$(dirname "$0")/../.."

PLAYWRIGHT_VERSION=1.65.2

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/browser: /usr/bin/chromium is missing; run: sudo apt-get install -y chromium" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

if ! python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('playwright') != '$PLAYWRIGHT_VERSION')" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check "playwright==$PLAYWRIGHT_VERSION"
fi

components=components/target/wasm32-wasip2/release
if [ ! -f "$components/testbed.wasm" ]; then
  echo "tests/browser: $components/testbed.wasm is missing; build components/ first:" >&2
  echo "  cargo build --release --target wasm32-wasip2 --manifest-path components/Cargo.toml --target-dir components/target" >&2
  exit 1
fi

bin="${BAZAAR_BIN:-${CARGO_TARGET_DIR:-target}/debug/bazaar}"
if [ -z "${BAZAAR_BIN:-}" ] && { [ ! -x "$bin" ] ||
  [ -n "$(find host Cargo.toml Cargo.lock -type f -newer "$bin" -print -quit)" ]; }; then
  # Missing, or older than its sources (the page is embedded in it).
  cargo build -p bazaar
fi

# The test stops the host itself, even on failure; the outer timeout bounds
# the whole run should anything hang.
exec timeout --kill-after=15 600 python3 tests/browser/dashboard_test.py "$bin" "$components"
