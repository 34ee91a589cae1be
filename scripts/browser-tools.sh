#!/usr/bin/env bash
# Installs what the page's browser tests need: Debian's Chromium (/usr/bin/chromium) and
# playwright-core from the npm registry, at the version tests/browser/package-lock.json pins.
# Playwright's own browser download is never used (it cannot reach its servers here, and a
# browser from the distribution is one the machine's updates keep patched). Safe to run again:
# it does nothing when both are already there. Exits non-zero, saying what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[browser-tools] $*"; }

if [ ! -x /usr/bin/chromium ]; then
  log "installing Debian's chromium"
  if ! command -v apt-get >/dev/null 2>&1; then
    log "no apt-get: install Chromium at /usr/bin/chromium by hand"; exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
log "$(/usr/bin/chromium --version)"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "Node.js and npm are needed for the browser tests"; exit 1
fi
lock=tests/browser/package-lock.json
stamp=tests/browser/node_modules/.installed-from-lock
if [ ! -f "$stamp" ] || ! cmp -s "$lock" "$stamp"; then
  log "installing playwright-core (npm ci)"
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  cp "$lock" "$stamp"
fi
log "playwright-core $(node -p 'require("./tests/browser/node_modules/playwright-core/package.json").version')"
