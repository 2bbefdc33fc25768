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
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chargepin.charger.store import StateStore
from chargepin.core.pin import weakness

pytestmark = pytest.mark.slow

SERIAL = "CP-MP-0001"
MANDATORY = ["--model", "Pulsar Max", "--firmware", "6.11.2", "--produced", "2025-09-01"]
READY_TIMEOUT = 15.0
COMMAND_TIMEOUT = 30.0
WRONG_PIN_EXIT = 3
LOCKED_EXIT = 4
CHARGEPIN = [sys.executable, "-m", "chargepin.cli"]


def free_ports(count: int) -> list[int]:
    """Ports the kernel just handed out on loopback (held together so they differ)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class Service:
    """A long-running `chargepin` process whose stdout is read line by line on a thread."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.args = args
        self.log = log
        self._stderr = log.open("ab")
        self.process = subprocess.Popen(
            [*CHARGEPIN, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> str:
        """The READY line's fields, or fail with the process's stderr once `timeout` is up."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                pytest.fail(f"{self.args[:2]} not READY in {timeout} s; stderr:\n{self.stderr()}")
            if line is None:
                code = self.process.wait()
                pytest.fail(f"{self.args[:2]} exited {code} before READY:\n{self.stderr()}")
            if line.startswith("READY "):
                return line.removeprefix("READY ")

    def stderr(self) -> str:
        self._stderr.flush()
        return self.log.read_text(errors="replace")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send `sig` and return the exit code."""
        self.process.send_signal(sig)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL if still running, and reap it (the `finally` of every test)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self._stderr.close()


class Bench:
    """The processes of one test, under one temporary directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.services: list[Service] = []
        self.radio_ports = free_ports(3)
        self.state = directory / "charger.db"

    def start(self, *args: str, name: str) -> Service:
        service = Service(list(args), self.directory / f"{name}.log")
        self.services.append(service)
        return service

    def transport(self, index: int) -> str:
        return f"tcp-client:127.0.0.1:{self.radio_ports[index]}"

    def start_radio(self) -> Service:
        ports = ",".join(map(str, self.radio_ports))
        radio = self.start("radio", "--ports", ports, name="radio")
        assert radio.wait_ready() == f"ports={ports}"
        return radio

    def start_charger(self) -> Service:
        daemon = self.start(
            "charger",
            "run",
            "--state",
            str(self.state),
            "--transport",
            self.transport(0),
            name="charger",
        )
        fields = dict(item.split("=", 1) for item in daemon.wait_ready().split())
        assert fields["serial"] == SERIAL
        with StateStore.open(self.state) as store:
            assert fields["address"] == store.identity.address
        return daemon

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A one-shot `chargepin` command, bounded in time (killed and reported if it hangs)."""
        try:
            return subprocess.run(
                [*CHARGEPIN, *args],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            logs = "\n".join(f"--- {s.log.name}:\n{s.stderr()[-3000:]}" for s in self.services)
            pytest.fail(
                f"`chargepin {' '.join(args)}` hung for {COMMAND_TIMEOUT} s; stderr:\n"
                f"{error.stderr!r}\n{logs}"
            )

    def init(self, *extra: str) -> None:
        result = self.run(
            "charger", "init", "--state", str(self.state), "--serial", SERIAL, *MANDATORY, *extra
        )
        assert result.returncode == 0, result.stderr

    def charger_pin(self) -> str:
        result = self.run("charger", "pin", "--state", str(self.state))
        assert result.returncode == 0, result.stderr
        pin = result.stdout.strip()
        assert re.fullmatch(r"[0-9]{6}", pin)
        return pin

    def phone(
        self, command: str, phone: int, *args: str, pin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`chargepin phone COMMAND` as phone `phone` (1 or 2: its own bonds file and port)."""
        options = ["--transport", self.transport(phone), "--bonds", str(self.bonds(phone))]
        if pin is not None:
            options += ["--pin", pin]
        return self.run("phone", command, *options, *args)

    def bonds(self, phone: int) -> Path:
        return self.directory / f"phone{phone}-bonds.db"

    def close(self) -> None:
        for service in reversed(self.services):
            service.kill()


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    processes = Bench(tmp_path)
    try:
        yield processes
    finally:
        processes.close()


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
        wrong = bench.phone("pair", 1, SERIAL, pin=another_pin(current))
        assert wrong.returncode == WRONG_PIN_EXIT, wrong.stderr
        message = one_error_line(wrong)
        assert f"epoch is now {attempt}" in message
        assert ("locked for" in message) == (attempt == 5), message

    daemon.process.send_signal(signal.SIGKILL)
    assert daemon.process.wait(10) == -signal.SIGKILL
    bench.start_charger()

    locked = bench.phone("pair", 1, SERIAL, pin=bench.charger_pin())
    assert locked.returncode == LOCKED_EXIT, locked.stderr
    assert 200 <= retry_seconds(one_error_line(locked)) <= 300

    report = bench.run("charger", "info", "--state", str(bench.state), "--json")
    assert report.returncode == 0, report.stderr
    lockout = json.loads(report.stdout)["lockout"]
    assert lockout["locked"] is True
    assert 200 <= lockout["retry_after"] <= 300
