"""Processes for the multi-process tests: `chargepin` services awaited by READY, one-shot
commands bounded in time, everything killed in `finally`.
"""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from chargepin.charger.store import StateStore

SERIAL = "CP-MP-0001"
MANDATORY = ["--model", "Pulsar Max", "--firmware", "6.11.2", "--produced", "2025-09-01"]
READY_TIMEOUT = 15.0
COMMAND_TIMEOUT = 30.0
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

    def __init__(self, directory: Path, serial: str = SERIAL) -> None:
        self.directory = directory
        self.serial = serial
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
        assert fields["serial"] == self.serial
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
            "charger",
            "init",
            "--state",
            str(self.state),
            "--serial",
            self.serial,
            *MANDATORY,
            *extra,
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
