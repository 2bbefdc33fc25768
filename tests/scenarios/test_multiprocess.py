"""The real deployment shape: radio, charger daemon and phones as separate OS processes.

`chargepin radio` serves virtual controllers on loopback TCP ports, `chargepin charger run` is
the daemon a charger boots, and every `chargepin phone ...` is a fresh process with its bonds in
a file. Nothing is shared but the air and the files, so these tests show that bonds and the
lockout survive a daemon restart and a kill -9, which no in-process test can.

Services are awaited by their READY line (read with a deadline), never by sleeping; every process
started here is killed in `finally`.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import pytest

from chargepin.charger.store import StateStore
from chargepin.core.pin import weakness
from tests.helpers.processes import SERIAL, Bench

pytestmark = pytest.mark.slow

WRONG_PIN_EXIT = 3
LOCKED_EXIT = 4


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single `error: ...` line an expected failure prints (no traceback)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def another_pin(pin: str) -> str:
    """A strong PIN that is not `pin`: a wrong guess that is not refused as weak by the phone."""
    value = int(pin)
    while True:
        value = (value + 7919) % 1_000_000
        candidate = f"{value:06d}"
        if candidate != pin and weakness(candidate) is None:
            return candidate


def retry_seconds(message: str) -> int:
    """Seconds in a message like "... try again in 4 min 57 s" (core.errors.format_duration)."""
    match = re.search(r"try again in (?:(\d+) min)? ?(?:(\d+) s)?$", message)
    assert match is not None and any(match.groups()), message
    minutes, seconds = (int(group or 0) for group in match.groups())
    return 60 * minutes + seconds


def test_pair_control_restart_second_phone_wrong_pin_and_forget(bench: Bench) -> None:
    bench.start_radio()
    bench.init()
    daemon = bench.start_charger()
    with StateStore.open(bench.state) as store:
        address = store.identity.address

    scan = bench.phone("scan", 1, "--seconds", "0.5")
    assert scan.returncode == 0, scan.stderr
    assert scan.stdout.split() == [address, SERIAL, "PIN", "on", "epoch", "0"]

    paired = bench.phone("pair", 1, SERIAL, pin=bench.charger_pin())
    assert paired.returncode == 0, paired.stderr
    assert paired.stdout.strip() == f"paired with {SERIAL} (PIN used)"

    started = bench.phone("start", 1, SERIAL)  # no PIN: the bond secures the link
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("charging")
    limited = bench.phone("limit", 1, address, "--amps", "16")
    assert limited.returncode == 0, limited.stderr
    assert limited.stdout.startswith("charging, limit 16 A")

    assert daemon.stop(signal.SIGTERM) == 0
    daemon = bench.start_charger()

    status = bench.phone("status", 1, SERIAL)  # bonds live in the state file: still paired
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("idle")  # a charging session does not survive a reboot

    info = bench.phone("info", 2, address)  # open to anyone, no pairing
    assert info.returncode == 0, info.stderr
    assert re.search(r"PIN class\s+mandatory", info.stdout)
    assert re.search(r"epoch\s+0", info.stdout)

    with StateStore.open(bench.state) as store:
        wrong_pin = another_pin(store.current_pin().digits)
    wrong = bench.phone("pair", 2, SERIAL, pin=wrong_pin)
    assert wrong.returncode == WRONG_PIN_EXIT
    assert "wrong PIN" in one_error_line(wrong) and "epoch is now 1" in one_error_line(wrong)

    pin = bench.charger_pin()  # hardened: the failure moved the charger to the next epoch's PIN
    right = bench.phone("pair", 2, SERIAL, pin=pin)
    assert right.returncode == 0, right.stderr
    assert right.stdout.strip() == f"paired with {SERIAL} (PIN used)"

    forgot = bench.phone("forget", 1, SERIAL)
    assert forgot.returncode == 0, forgot.stderr
    assert forgot.stdout.strip() == f"forgot {address}"
    needs_pin = bench.phone("stop", 1, SERIAL)
    assert needs_pin.returncode == 9
    assert "needs its 6-digit PIN" in one_error_line(needs_pin)

    assert daemon.stop(signal.SIGINT) == 0


def test_kill_9_during_a_lockout_keeps_the_charger_locked(bench: Bench) -> None:
    bench.start_radio()
    bench.init("--lockout-seconds", "300")
    daemon = bench.start_charger()

    for attempt in range(1, 6):
        with StateStore.open(bench.state) as store:
            current = store.current_pin().digits
        sent = time.time()  # after the loop: the 300 s lock began after this
        wrong = bench.phone("pair", 1, SERIAL, pin=another_pin(current))
        assert wrong.returncode == WRONG_PIN_EXIT, wrong.stderr
        message = one_error_line(wrong)
        assert f"epoch is now {attempt}" in message
        assert ("locked for" in message) == (attempt == 5), message

    daemon.process.send_signal(signal.SIGKILL)
    assert daemon.process.wait(10) == -signal.SIGKILL
    bench.start_charger()

    # The lock's remaining time is checked against the wall clock the charger reads, never
    # against a guess of how long the kill and the restart take on this machine.
    locked = bench.phone("pair", 1, SERIAL, pin=bench.charger_pin())
    assert locked.returncode == LOCKED_EXIT, locked.stderr
    assert 300 - (time.time() - sent) <= retry_seconds(one_error_line(locked)) <= 300

    report = bench.run("charger", "info", "--state", str(bench.state), "--json")
    assert report.returncode == 0, report.stderr
    info = json.loads(report.stdout)
    lockout = info["lockout"]
    assert lockout["locked"] is True
    assert sent + 300 - info["at"] <= lockout["retry_after"] <= 300  # at: when it was read
