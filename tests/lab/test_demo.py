"""`chargepin demo`: the whole story runs clean and fails loudly but tidily.

The demo runs in a child interpreter, as a user would run it, so the output checked here is
everything that reaches the terminal (stdout and stderr, warnings and shutdown noise included).
How long it takes is not checked: on a shared machine that is the neighbours' load, not the demo
(the demo prints its own timings; benchmarks measure speed).
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest
import segno

from chargepin.lab.demo import run
from chargepin.lab.local_fleet import PASSWORD

HANG = 600.0
"""Seconds after which the demo is taken for hung: a bound against hanging, not a speed target."""

RUN_DEMO = "import sys; from chargepin.lab.demo import run; sys.exit(run())"

# Break the story on purpose: the "typo" is the right PIN, so the wrong-PIN step must fail.
RUN_BROKEN_DEMO = (
    "import sys; import chargepin.lab.demo as demo; "
    "demo._typo = lambda pin: pin; sys.exit(demo.run())"
)

STORY = (
    "Factory: a Pulsar Max on firmware 6.11.2 and a Pulsar Plus on 6.8.0",
    "fleet service in this process, SQLite fleet.db",
    "CP00000001 Pulsar Max, firmware 6.11.2: PIN mandatory, on",
    "CP00000002 Pulsar Plus, firmware 6.8.0: PIN optional, off until the owner enables it",
    "bundle CP00000001.json -> charger",
    "sticker on CP00000001 CHARGEPIN:1:CP00000001:",
    "Commissioning: the owner scans the sticker",
    "claim CP00000001 (Pulsar Max): role owner",
    "PIN shown after the scan",
    "The owner's phone pairs with the PIN",
    "charging started",
    "Bonded reconnect, no PIN",
    "paired_now False",
    "Daemon restart: bonds are kept",
    "The charger connects to the fleet over OCPP 2.0.1",
    "/ocpp/CP00000001 (security profile 1)",
    "Basic auth as CP00000001, BootNotification accepted",
    "owner sees online, connector available",
    "An invited user",
    "owner@example.com invites family@example.com",
    "family@example.com: role user on CP00000001",
    "A wrong PIN, then the right one",
    "wrong PIN refused; epoch 0 -> 1",
    "troubleshooting shows That PIN did not work. The charger's PIN is now",
    "Durations are compressed: the chargers and the fleet run on a fake clock",
    "locked for 5 min after 5 wrong PINs",
    "SMP 0x09 Repeated Attempts",
    "ChargerLocked: charger locked after too many wrong PINs",
    "bonded, reads status",
    "reconciled)",
    "lock over; pairing works again",
    "What the owner saw: the charger's security events",
    "StartupOfTheDevice: the charger started",
    "MaintenanceLoginFailed: wrong PIN from",
    "org.chargepin.PinLockout: 5 wrong PINs from",
    "6 wrong PINs and the lockout among them",
    "Optional class: the owner enables the PIN",
    "CP00000002: role owner; Charger Info: PIN not enabled",
    "paired with Just Works (no PIN)",
    "enable_pin: applied, receipt committed in the fleet",
    "PinNeeded: charger CP00000002 needs its 6-digit PIN",
    "Changing the PIN (firmware 6.11)",
    "change_pin: committed in the fleet",
    "Charger Info (owner)",
    "Charger Info (user)",
    "owner and invited reconnect without the PIN",
    "PIN changed; Charger Info shows it; bonds kept; new phones need it",
    "The owner revokes the family member: the charger hears it over OCPP",
    "family@example.com: 3 phones, re-key",
    "remove_phone",
    "rekey: applied, signed receipt committed",
    "PIN generation 0 -> 1",
    "member's bonded phone refused, PinNeeded",
    "revoked your access",
    "removed from the charger",
    "the charger moved to a new PIN sequence (re-key)",
    "3 phones forgotten, the member's phone refused",
    "The attack, live: recovering a PIN bit by bit",
    "classic PIN",
    "recovered after",
    "hardened PIN not recovered: 20 failed attempts met 20 different PINs",
    "The app in a browser: the same fleet's web pages",
    "owner@example.com invites friend@example.com: role user",
    "signed in as owner@example.com My chargers lists CP00000001, CP00000002",
    "signed in as friend@example.com My chargers lists CP00000001",
    "chargepin demo: summary",
    "The app with this story's data: make demo SERVE=1 (or chargepin demo --serve)",
    "http://127.0.0.1:8000/app/ until Ctrl-C",
    "owner owner@example.com password: correct horse battery",
    "invited user friend@example.com password: correct horse battery",
    "revoked member family@example.com password: correct horse battery",
)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    # COLUMNS fixes the layout whatever the runner's terminal; -W always shows every warning.
    env = {**os.environ, "COLUMNS": "160", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=HANG,
        check=False,
    )


@pytest.mark.slow
def test_demo_tells_the_whole_story_cleanly() -> None:
    done = _run(RUN_DEMO)
    output = done.stdout + done.stderr

    assert done.returncode == 0, output
    # Panel borders and line wrapping aside, the story reads as one text.
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", done.stdout).split())
    missing = [line for line in STORY if line not in text]
    assert not missing, f"missing from the story: {missing}\n{output}"
    assert done.stderr == ""
    assert "Traceback" not in output
    assert "Warning" not in output
    _assert_sticker_qr_printed_intact(done.stdout)


def _assert_sticker_qr_printed_intact(stdout: str) -> None:
    """The sticker's QR code reaches the terminal row for row as segno draws it (scannable)."""
    found = re.search(r"CHARGEPIN:1:CP00000001:[0-9A-Z]{12}", stdout)
    assert found, stdout
    drawn = io.StringIO()
    segno.make(found.group(), error="m").terminal(out=drawn, compact=True)
    rows = drawn.getvalue().rstrip("\n").splitlines()
    lines = stdout.splitlines()

    def intact_at(first: int) -> bool:
        block = lines[first : first + len(rows)]
        return len(block) == len(rows) and all(
            row in line for row, line in zip(rows, block, strict=True)
        )

    assert any(intact_at(i) for i, line in enumerate(lines) if rows[0] in line), (
        f"the QR code of {found.group()} is not printed intact:\n{stdout}"
    )


@pytest.mark.slow
def test_a_broken_step_ends_in_one_clear_line_and_exit_1() -> None:
    done = _run(RUN_BROKEN_DEMO)
    output = done.stdout + done.stderr

    assert done.returncode == 1, output
    failure = [line for line in output.splitlines() if "demo failed" in line]
    assert failure == [
        "demo failed: step 8 (A wrong PIN, then the right one): a wrong PIN must not pair"
    ], output
    assert "Traceback" not in output
    assert "chargepin demo: summary" not in output


RUN_SERVED_DEMO = "import sys; from chargepin.lab.demo import run; sys.exit(run(True, 0))"
SERVED = re.compile(r"Open (http://127\.0\.0\.1:\d+)/app/ in a browser")


def signed_in(base: str, email: str) -> httpx.Client:
    """A browser signed in on the served pages: the form's CSRF token, our Origin."""
    browser = httpx.Client(base_url=base, headers={"Origin": base}, follow_redirects=True)
    form = browser.get("/app/signin").text
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', form)
    assert token, form
    answer = browser.post(
        "/app/signin", data={"csrf": token.group(1), "email": email, "password": PASSWORD}
    )
    assert answer.status_code == 200 and "My chargers" in answer.text, answer.text
    return browser


@pytest.mark.slow
def test_the_served_demo_keeps_the_app_with_its_data_until_ctrl_c(tmp_path: Path) -> None:
    out = tmp_path / "demo.out"
    env = {**os.environ, "COLUMNS": "160", "NO_COLOR": "1"}
    with out.open("w") as sink:
        demo = subprocess.Popen(
            [sys.executable, "-W", "always", "-c", RUN_SERVED_DEMO],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + HANG
        while not (found := SERVED.search(out.read_text())):
            assert demo.poll() is None, out.read_text()
            assert time.monotonic() < deadline, "the demo never said where the app is"
            time.sleep(0.1)
        base = found.group(1)

        with (
            closing(signed_in(base, "owner@example.com")) as owner,
            closing(signed_in(base, "friend@example.com")) as friend,
            closing(signed_in(base, "family@example.com")) as family,
        ):
            mine = owner.get("/app/chargers").text
            assert "CP00000001" in mine and "CP00000002" in mine
            assert "online" in mine  # the charger's OCPP link stays up while the app is served
            assert "Who saw the PIN" in owner.get("/app/chargers/CP00000001").text
            info = friend.get("/app/chargers/CP00000001")
            assert info.status_code == 200 and "Show PIN" in info.text
            revoked = family.get("/app/chargers/CP00000001")
            assert revoked.status_code == 403 and "revoked your access" in revoked.text
        assert demo.poll() is None  # still serving

        demo.send_signal(signal.SIGINT)
        assert demo.wait(HANG) == 0, out.read_text()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    output = out.read_text()
    assert "stopped: the demo's fleet and its data are gone." in output
    assert "Traceback" not in output and "Warning" not in output, output
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/app/signin")


def test_a_taken_port_is_refused_before_the_story(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert run(True, port) == 1
    said = " ".join(capsys.readouterr().out.split())
    assert f"demo failed: cannot serve the app on 127.0.0.1:{port}" in said
    assert f"make demo SERVE=1 PORT={port + 1}" in said
    assert "Factory" not in said  # refused before the story began
