"""`chargepin` services as child processes: the radio and the charger daemon, awaited by READY.

The crash loop and the multi-process tests run the daemon the way a charger boots it, as
`sys.executable -m chargepin.cli charger run ...`, so that `kill -9` hits a real process with its
own SQLite connection. Services are awaited by their READY line read with a deadline (never by
sleeping), and `Service.kill` reaps them: call it in `finally`.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from chargepin.core.errors import ChargepinError

CHARGEPIN = (sys.executable, "-m", "chargepin.cli")
"""This interpreter running the `chargepin` CLI: the children run the code under test."""

READY_TIMEOUT = 15.0
"""Seconds a service gets to print READY (a loaded CI machine starts Python slowly)."""

REAP_TIMEOUT = 10.0
"""Seconds to wait for a signalled child to exit."""


class ServiceError(ChargepinError):
    """A child service that exited or stayed silent before READY; the message has its stderr."""


def ready_fields(line: str) -> dict[str, str]:
    """The `key=value` fields of a READY line (`address=C0:.. serial=CP-1` -> a dict)."""
    return dict(item.split("=", 1) for item in line.split())


class Service:
    """A long-running `chargepin` process whose stdout is read line by line on a thread.

    Its stderr goes to `log`, so a failure can be reported with what the child said.
    """

    def __init__(
        self, args: Sequence[str], log: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.args = list(args)
        self.log = log
        self._stderr = log.open("ab")
        self.process = subprocess.Popen(
            [*CHARGEPIN, *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> str:
        """The READY line's fields, or ServiceError with the child's stderr after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                raise ServiceError(
                    f"`chargepin {' '.join(self.args[:2])}` not READY in {timeout} s; "
                    f"stderr:\n{self.stderr()}"
                ) from None
            if line is None:
                code = self.process.wait()
                raise ServiceError(
                    f"`chargepin {' '.join(self.args[:2])}` exited {code} before READY; "
                    f"stderr:\n{self.stderr()}"
                )
            if line.startswith("READY "):
                return line.removeprefix("READY ")

    def stderr(self) -> str:
        """Everything the child wrote to stderr so far."""
        self._stderr.flush()
        return self.log.read_text(errors="replace")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = REAP_TIMEOUT) -> int:
        """Send `sig`, reap the child and return its exit code (-9 after SIGKILL)."""
        self.process.send_signal(sig)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL if still running, reap it and close its log (the `finally` of every user)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(REAP_TIMEOUT)
        self._stderr.close()


def start_radio(ports: Sequence[int], log: Path) -> Service:
    """`chargepin radio`: one virtual controller per loopback port, READY when all listen."""
    joined = ",".join(map(str, ports))
    radio = Service(["radio", "--ports", joined], log)
    try:
        announced = radio.wait_ready()
        if announced != f"ports={joined}":
            raise ServiceError(f"the radio announced {announced!r}, expected ports={joined}")
    except BaseException:
        radio.kill()
        raise
    return radio


def start_charger(
    state: Path, transport: str, log: Path, env: Mapping[str, str] | None = None
) -> tuple[Service, dict[str, str]]:
    """`chargepin charger run` on `state`, READY once it advertises; the READY fields too.
    `env`: the child's whole environment (default: ours)."""
    daemon = Service(["charger", "run", "--state", str(state), "--transport", transport], log, env)
    try:
        fields = ready_fields(daemon.wait_ready())
    except BaseException:
        daemon.kill()
        raise
    return daemon, fields
