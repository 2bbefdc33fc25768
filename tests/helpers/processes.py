"""Processes for the multi-process tests: `chargepin` services awaited by READY, one-shot
commands bounded in time, everything killed in `finally`.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from chargepin.charger.store import StateStore
from chargepin.lab.ports import LOOPBACK, free_ports
from chargepin.lab.processes import CHARGEPIN, Service, start_charger, start_radio

SERIAL = "CP-MP-0001"
MANDATORY = ["--model", "Pulsar Max", "--firmware", "6.11.2", "--produced", "2025-09-01"]
COMMAND_TIMEOUT = 30.0


class Bench:
    """The processes of one test, under one temporary directory."""

    def __init__(self, directory: Path, serial: str = SERIAL, phones: int = 2) -> None:
        self.directory = directory
        self.serial = serial
        self.services: list[Service] = []
        self.radio_ports = free_ports(1 + phones)
        """The radio's controllers: the charger's (0), then one per phone (1, 2, ...)."""
        self.state = directory / "charger.db"

    def start(self, *args: str, name: str) -> Service:
        service = Service(list(args), self.directory / f"{name}.log")
        self.services.append(service)
        return service

    def transport(self, index: int) -> str:
        return f"tcp-client:127.0.0.1:{self.radio_ports[index]}"

    def start_radio(self) -> Service:
        radio = start_radio(self.radio_ports, self.directory / "radio.log")
        self.services.append(radio)
        return radio

    def start_charger(self) -> Service:
        daemon, fields = start_charger(
            self.state, self.transport(0), self.directory / "charger.log"
        )
        self.services.append(daemon)
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


async def until_listening(port: int, timeout: float = 15.0) -> None:
    """Until something accepts TCP connections on 127.0.0.1:`port` (bounded), without blocking
    the event loop: a `fleet serve` listens once its app is built and migrated."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection(LOOPBACK, port)
        except OSError:
            await asyncio.sleep(0.05)  # polling a port, bounded by the deadline
            continue
        writer.close()
        await writer.wait_closed()
        return
    pytest.fail(f"nothing listens on {LOOPBACK}:{port} after {timeout} s")


T = TypeVar("T")


async def until(check: Callable[[], Awaitable[T | None]], what: str, timeout: float = 15.0) -> T:
    """The first truthy `check()`, polled every 20 ms; fails the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.02)
