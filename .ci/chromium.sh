#!/usr/bin/env bash
# Install Debian's chromium package when it is missing, for the app's browser tests (Playwright
# drives it; Playwright's own browser download is not reachable from CI). Prints the browser's
# executable path on stdout. Idempotent: an installed browser is reused.
set -euo pipefail
find_browser() {
  for name in chromium chromium-browser; do
    if path=$(command -v "$name" 2>/dev/null); then
      echo "$path"
      return 0
    fi
  done
  return 1
}
if ! find_browser >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "Chromium is not installed; install Debian's chromium package (needs root)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # One installer at a time: several worktrees may run the suite at once.
  exec 9>/tmp/chargepin-chromium-install.lock
  flock 9
  if ! find_browser >/dev/null; then
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends chromium >&2
  fi
fi
find_browser
