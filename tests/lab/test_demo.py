"""`chargepin demo`: the whole story runs clean, in under a minute, and fails loudly but tidily.

The demo runs in a child interpreter, as a user would run it, so the output checked here is
everything that reaches the terminal (stdout and stderr, warnings and shutdown noise included).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

RUN_DEMO = "import sys; from chargepin.lab.demo import run; sys.exit(run())"

# Break the story on purpose: the "typo" is the right PIN, so the wrong-PIN step must fail.
RUN_BROKEN_DEMO = (
    "import sys; import chargepin.lab.demo as demo; "
    "demo._typo = lambda pin: pin; sys.exit(demo.run())"
)

STORY = (
    "Factory: a Pulsar Max on firmware 6.11.2",
    "Charger Info shows PIN",
    "The owner's phone pairs with the PIN",
    "charging started",
    "Bonded reconnect, no PIN",
    "paired_now False",
    "Daemon restart: bonds are kept",
    "A second phone: an invited user",
    "A wrong PIN, then the right one",
    "WrongPin: wrong PIN (charger PIN epoch is now 1)",
    "troubleshooting shows",
    "Durations are compressed: the charger runs on a fake clock",
    "locked for 5 min after 5 wrong PINs",
    "SMP 0x09 Repeated Attempts",
    "ChargerLocked: charger locked after too many wrong PINs",
    "bonded, reads status",
    "lock over; pairing works again",
    "Optional class: the owner enables the PIN",
    "paired with Just Works (no PIN)",
    "enable_pin -> receipt verified",
    "PinNeeded: charger CP-0002 needs its 6-digit PIN",
    "Changing the PIN (firmware 6.11)",
    "verified: change_pin, fingerprint matches",
    "owner and invited reconnect without the PIN",
    "PIN changed; bonds kept; new phones need the new PIN",
    "chargepin demo: summary",
)


def _run(code: str) -> tuple[subprocess.CompletedProcess[str], float]:
    # COLUMNS fixes the layout whatever the runner's terminal; -W always shows every warning.
    env = {**os.environ, "COLUMNS": "160", "NO_COLOR": "1"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    return done, time.monotonic() - started


@pytest.mark.slow
def test_demo_tells_the_whole_story_cleanly_in_under_a_minute() -> None:
    done, took = _run(RUN_DEMO)
    output = done.stdout + done.stderr

    assert done.returncode == 0, output
    assert took < 60.0, f"the demo took {took:.1f} s"  # the acceptance bound
    # Panel borders and line wrapping aside, the story reads as one text.
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", done.stdout).split())
    missing = [line for line in STORY if line not in text]
    assert not missing, f"missing from the story: {missing}\n{output}"
    assert done.stderr == ""
    assert "Traceback" not in output
    assert "Warning" not in output


@pytest.mark.slow
def test_a_broken_step_ends_in_one_clear_line_and_exit_1() -> None:
    done, _ = _run(RUN_BROKEN_DEMO)
    output = done.stdout + done.stderr

    assert done.returncode == 1, output
    failure = [line for line in output.splitlines() if "demo failed" in line]
    assert failure == [
        "demo failed: step 6 (A wrong PIN, then the right one): a wrong PIN must not pair"
    ], output
    assert "Traceback" not in output
    assert "chargepin demo: summary" not in output
