"""The browser of the web app's tests: Debian's Chromium, headless, driven by Playwright
(docs/APP.md, "Browser tests"), and axe-core for the accessibility checks.

The browser comes from `.ci/chromium.sh` (the Makefile passes its path in
CHARGEPIN_TEST_CHROMIUM; run alone, `chromium_path` calls the script, which installs Debian's
package when it is missing). Playwright's own browser download is never used. axe-core comes
from npm as tests/fleet/axe's lock file pins it (the Makefile's `npm ci`; run alone, the same
command here).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AXE_PACKAGE = ROOT / "tests" / "fleet" / "axe"
AXE_SCRIPT = AXE_PACKAGE / "node_modules" / "axe-core" / "axe.min.js"


def chromium_path() -> str:
    """Debian's Chromium: the Makefile's, or installed now by the same script."""
    path = os.environ.get("CHARGEPIN_TEST_CHROMIUM")
    if path:
        return path
    script = ROOT / ".ci" / "chromium.sh"
    done = subprocess.run(["bash", str(script)], check=True, capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1]


def axe_script() -> Path:
    """axe-core's browser bundle, installed from the lock file when missing."""
    if AXE_SCRIPT.exists():
        return AXE_SCRIPT
    # One installer at a time: pytest's workers may all start here on a fresh clone.
    with (AXE_PACKAGE / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not AXE_SCRIPT.exists():
            subprocess.run(
                ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=AXE_PACKAGE,
                check=True,
                capture_output=True,
            )
    return AXE_SCRIPT
