"""Light simulated charging stations for `chargepin bench ocpp`: thousands per process.

Plain `websockets` and OCPP-J frames built with `json` (no `ocpp` package, no schema
validation), so that a station costs the client little and the CPU goes to the server under
test. Each station does what a chargepin charger does on its link (docs/OCPP.md): Basic auth
with its serial and CSMS password, the subprotocol `ocpp2.0.1`, BootNotification, then
SecurityEventNotifications with our customData (a fresh eventId each, so a CSMS stores each).
A CALL from the CSMS is answered with a CallError NotImplemented; a station never crashes its
process, it records why it failed.

Run as a child process (`python -m chargepin.lab.ocpp_stations STATIONS_JSON`) so that the
server's memory and CPU are its own: it reads one JSON command per line on stdin and answers
each with one JSON line on stdout (`StationClient` below is the parent's side).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.typing import Subprotocol

from chargepin.core.csms_auth import basic_authorization
from chargepin.core.ocpp_events import SecurityEventType, custom_data, tech_info, timestamp

SUBPROTOCOL = Subprotocol("ocpp2.0.1")
CALL, CALL_RESULT, CALL_ERROR = 2, 3, 4
MAX_FRAME = 64 * 1024
"""The charger's own bound on a frame (charger/ocpp_station.py)."""

MODEL = "Pulsar Max"
FIRMWARE = "6.11"
"""What the stations' BootNotification reports: the firmware they were provisioned with, so the
fleet records nothing new."""

PHONE = "AA:BB:CC:DD:EE:01"
"""The phone named in the events' techInfo (a wrong PIN from it)."""

READY = "READY"
EXTENSIONS = "Sec-WebSocket-Extensions"


class StationFailed(Exception):
    """A CSMS answered a CALL with something other than its CallResult."""


def call_frame(message_id: str, action: str, payload: dict[str, Any]) -> str:
    """An OCPP-J CALL: [2, id, action, payload], compact."""
    return json.dumps([CALL, message_id, action, payload], separators=(",", ":"))


def boot_payload(serial: str) -> dict[str, Any]:
    """BootNotification as the charger sends it on power-up (docs/OCPP.md)."""
    return {
        "reason": "PowerUp",
        "chargingStation": {
            "model": MODEL,
            "vendorName": "chargepin",
            "firmwareVersion": FIRMWARE,
            "serialNumber": serial,
        },
    }


def event_payload(serial: str, number: int, now: float) -> dict[str, Any]:
    """A wrong PIN as the charger reports it (core.ocpp_events), event id `serial:number`."""
    info: dict[str, str | int] = {
        "origin": "ble",
        "phone": PHONE,
        "reason": "wrong_pin",
        "epoch": 0,
    }
    kind = SecurityEventType.LOGIN_FAILED
    return {
        "type": str(kind),
        "timestamp": timestamp(now),
        "techInfo": tech_info(info, 1, now, kind),
        "customData": custom_data(serial, number),
    }


def error_name(error: BaseException) -> str:
    """A short, stable name for a failure (counted per kind in the reports)."""
    if isinstance(error, InvalidStatus):
        return f"http {error.response.status_code}"
    if isinstance(error, StationFailed):
        return str(error)
    return type(error).__name__


@dataclass
class Station:
    """One simulated charger: its credentials and, while connected, its socket."""

    serial: str
    password: str
    socket: ClientConnection | None = None
    calls: Iterator[int] = field(default_factory=itertools.count)
    events: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    extensions: str = ""
    """The WebSocket extensions the CSMS accepted (Sec-WebSocket-Extensions), e.g. deflate."""

    async def call(self, action: str, payload: dict[str, Any], timeout: float) -> Any:
        """Send one CALL and wait for its CallResult's payload (one CALL in flight, OCPP-J).

        A CALL from the CSMS meanwhile is refused (NotImplemented); a CallError, an unexpected
        frame or no answer within `timeout` raises.
        """
        socket = self.socket
        if socket is None:
            raise StationFailed("not connected")
        message_id = f"{next(self.calls)}"
        await socket.send(call_frame(message_id, action, payload))
        async with asyncio.timeout(timeout):
            while True:
                frame = json.loads(await socket.recv())
                if not isinstance(frame, list) or len(frame) < 3:
                    raise StationFailed("malformed frame")
                if frame[0] == CALL:
                    await socket.send(
                        json.dumps(
                            [CALL_ERROR, frame[1], "NotImplemented", "not simulated", {}],
                            separators=(",", ":"),
                        )
                    )
                    continue
                if frame[1] != message_id:
                    continue  # a late answer to a call that timed out
                if frame[0] == CALL_RESULT:
                    return frame[2]
                raise StationFailed(f"CallError {str(frame[2])[:40]}")

    async def boot(self, url: str, timeout: float) -> None:
        """Open the connection (Basic auth, ocpp2.0.1) and have the boot accepted."""
        self.socket = await connect(
            url + self.serial,
            subprotocols=[SUBPROTOCOL],
            additional_headers={"Authorization": basic_authorization(self.serial, self.password)},
            open_timeout=timeout,
            ping_interval=None,  # the servers ping; a light client only answers
            close_timeout=2,
            max_size=MAX_FRAME,
            max_queue=16,
            proxy=None,
        )
        if self.socket.subprotocol != SUBPROTOCOL:
            raise StationFailed("subprotocol not accepted")
        response = self.socket.response
        self.extensions = "" if response is None else response.headers.get(EXTENSIONS, "")
        answer = await self.call("BootNotification", boot_payload(self.serial), timeout)
        if not isinstance(answer, dict) or answer.get("status") != "Accepted":
            raise StationFailed("boot not accepted")

    async def event(self, timeout: float) -> None:
        """One SecurityEventNotification, answered."""
        payload = event_payload(self.serial, next(self.events), time.time())
        await self.call("SecurityEventNotification", payload, timeout)

    async def close(self) -> None:
        socket, self.socket = self.socket, None
        if socket is not None:
            with contextlib.suppress(OSError, WebSocketException, TimeoutError):
                await socket.close()


# ---------------------------------------------------------------- the child process


class Pool:
    """This process's stations, one set per server (arm) it connects them to."""

    def __init__(self, credentials: Sequence[tuple[str, str]]) -> None:
        self.credentials = list(credentials)
        self.arms: dict[str, list[Station]] = {}

    def stations(self, arm: str) -> list[Station]:
        return [s for s in self.arms.get(arm, []) if s.socket is not None]

    async def connect(
        self, arm: str, url: str, count: int | None, timeout: float
    ) -> dict[str, Any]:
        """Connect and boot `count` stations (all if None) at once; who made it and how fast."""
        chosen = self.credentials if count is None else self.credentials[:count]
        stations = [Station(serial, password) for serial, password in chosen]
        latencies: list[float] = []
        errors: Counter[str] = Counter()

        async def one(station: Station) -> None:
            started = time.perf_counter()
            try:
                await station.boot(url, timeout)
            except (OSError, WebSocketException, StationFailed, TimeoutError, ValueError) as error:
                errors[error_name(error)] += 1
                await station.close()
                return
            latencies.append((time.perf_counter() - started) * 1000.0)

        started = time.perf_counter()
        await asyncio.gather(*(one(s) for s in stations))
        seconds = time.perf_counter() - started
        self.arms.setdefault(arm, []).extend(s for s in stations if s.socket is not None)
        return {
            "booted": len(latencies),
            "errors": dict(errors),
            "seconds": seconds,
            "latencies_ms": latencies,
            "extensions": sorted({s.extensions for s in stations if s.socket is not None}),
        }

    async def events(
        self, arm: str, seconds: float, concurrency: int, timeout: float
    ) -> dict[str, Any]:
        """`concurrency` closed loops for `seconds`, each over its own stations in turn (one
        CALL in flight per connection); every answered event's round trip."""
        stations = self.stations(arm)
        workers = min(concurrency, len(stations))
        latencies: list[float] = []
        errors: Counter[str] = Counter()
        deadline = time.perf_counter() + seconds

        async def worker(mine: list[Station]) -> None:
            turn = 0
            while mine and time.perf_counter() < deadline:
                station = mine[turn % len(mine)]
                sent = time.perf_counter()
                try:
                    await station.event(timeout)
                except (OSError, WebSocketException, StationFailed, TimeoutError) as error:
                    errors[error_name(error)] += 1
                    await station.close()
                    mine.remove(station)  # the next one takes its turn
                    continue
                latencies.append((time.perf_counter() - sent) * 1000.0)
                turn += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(stations[w::workers]) for w in range(workers)))
        return {
            "events": len(latencies),
            "errors": dict(errors),
            "seconds": time.perf_counter() - started,
            "latencies_ms": latencies,
        }

    async def close(self, arm: str) -> dict[str, Any]:
        stations = self.arms.pop(arm, [])
        await asyncio.gather(*(s.close() for s in stations))
        return {"closed": len(stations)}


async def serve_commands(pool: Pool) -> None:
    """Answer the parent's commands, one JSON line each, until `quit` or end of input."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(READY, flush=True)
    while line := await reader.readline():
        command = json.loads(line)
        op = command["op"]
        timeout = float(command.get("timeout", 60.0))
        arm = str(command.get("arm", ""))
        if op == "connect":
            answer = await pool.connect(arm, command["url"], command.get("count"), timeout)
        elif op == "events":
            answer = await pool.events(
                arm, float(command["seconds"]), int(command["concurrency"]), timeout
            )
        elif op == "close":
            answer = await pool.close(arm)
        elif op == "quit":
            break
        else:
            answer = {"error": f"unknown op {op!r}"}
        print(json.dumps({"op": op, **answer}), flush=True)
    for arm in list(pool.arms):
        await pool.close(arm)


def main(argv: Sequence[str]) -> int:
    """`python -m chargepin.lab.ocpp_stations STATIONS_JSON`: [[serial, password], ...]."""
    if len(argv) != 1:
        print("usage: python -m chargepin.lab.ocpp_stations STATIONS_JSON", file=sys.stderr)
        return 2
    credentials = [(str(s), str(p)) for s, p in json.loads(Path(argv[0]).read_text())]
    asyncio.run(serve_commands(Pool(credentials)))
    return 0


# ---------------------------------------------------------------- the parent's side


class ClientError(Exception):
    """A station client process died or did not answer in time; the message has its stderr."""


class StationClient:
    """One child process of stations, driven over its stdin and stdout."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log

    @classmethod
    async def start(
        cls, credentials: Sequence[tuple[str, str]], directory: Path, index: int, timeout: float
    ) -> StationClient:
        stations = directory / f"stations-{index}.json"
        stations.write_text(json.dumps([list(c) for c in credentials]))
        log = directory / f"stations-{index}.log"
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                __name__,
                str(stations),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                limit=2**28,  # an answer carries every latency sample on one line
            )
        client = cls(process, log)
        line = await client._line(timeout)
        if line.strip() != READY:
            raise ClientError(f"station client {index} said {line[:100]!r}: {client.stderr()}")
        return client

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    async def _line(self, timeout: float) -> str:
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except TimeoutError:
            raise ClientError(f"a station client was silent for {timeout} s") from None
        if not line:
            code = await self.process.wait()
            raise ClientError(f"a station client exited ({code}): {self.stderr()}")
        return line.decode()

    async def send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()

    async def answer(self, timeout: float) -> dict[str, Any]:
        reply: dict[str, Any] = json.loads(await self._line(timeout))
        if "error" in reply:
            raise ClientError(f"a station client refused a command: {reply['error']}")
        return reply

    async def stop(self) -> None:
        """Ask it to quit (it closes its connections), or kill it after a few seconds."""
        if self.process.returncode is None:
            with contextlib.suppress(OSError, ConnectionError):
                await self.send({"op": "quit"})
            try:
                await asyncio.wait_for(self.process.wait(), 10.0)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def everyone(
    clients: Sequence[StationClient], command: dict[str, Any], timeout: float
) -> list[dict[str, Any]]:
    """Send `command` to every client at once and gather their answers."""
    await asyncio.gather(*(c.send(command) for c in clients))
    return list(await asyncio.gather(*(c.answer(timeout) for c in clients)))


def split(items: Sequence[Any], parts: int) -> list[list[Any]]:
    """`items` in `parts` interleaved shares (sizes differ by at most one)."""
    return [list(items[i::parts]) for i in range(parts)]


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
