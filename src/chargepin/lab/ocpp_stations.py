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

Roaming (`hold`, for `chargepin bench fleet-scale`): each station keeps a connection to one of
several gateway URLs, its home first. When the socket drops (its gateway killed) or an attempt
fails, it waits the charger's own back-off (`core.csms_link.reconnect_delay`: from 1 s,
doubling per failure in a row, plus up to half at random) and tries the next URL in its own
order, as a charger behind a load balancer lands on another gateway.
Events are sent by a few loops per process, one CALL in flight per connection; an event stays
pending until its CallResult arrives and is resent with the same eventId on the station's next
connection (the charger's queue does the same), so the counts `created`, `acked` and `resent`
let the parent check that nothing acknowledged was lost and nothing was stored twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import resource
import signal
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
from chargepin.core.csms_link import reconnect_delay
from chargepin.core.ocpp_events import SecurityEventType, custom_data, tech_info, timestamp
from chargepin.lab.orphans import die_with_parent

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

BOOT_IN_FLIGHT = 100
"""First connections a process of roaming stations has in progress at once: the fleet's
stations are brought up at the pace the gateways take them (a ramp, not the storm measured);
reconnections after a drop are not held back (their back-off is the charger's own)."""
DRAIN_POLL = 0.05
"""Seconds between a draining loop's looks for a station whose pending event can go."""


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


# ---------------------------------------------------------------- roaming stations


@dataclass
class Roamer:
    """A station that keeps a connection to one of `urls` (its order: home first) and sends
    events that stay pending until answered (resent, same eventId, after a reconnection)."""

    station: Station
    urls: list[str]
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    pending: dict[str, Any] | None = None
    """The event sent but not yet answered: resent as is on the next connection."""
    sent_before: bool = False
    """Whether `pending` went out at least once (its next send is a resend)."""
    created: int = 0
    acked: int = 0
    resent: int = 0
    connects: int = 0
    drops: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    url: str = ""
    """The URL of the current (or last) connection."""

    async def keep(self, stop: asyncio.Event, timeout: float, first: asyncio.Semaphore) -> None:
        """Connect, wait for the socket to close, back off, try the next URL; until `stop`.
        The first connection waits its turn on `first` (the ramp)."""
        turn, failures = 0, 0
        while not stop.is_set():
            url = self.urls[turn % len(self.urls)]
            try:
                if self.connects == 0:
                    async with first:
                        await self.station.boot(url, timeout)
                else:
                    await self.station.boot(url, timeout)
            except (OSError, WebSocketException, StationFailed, TimeoutError, ValueError) as error:
                self.failures[error_name(error)] += 1
                await self.station.close()
                turn += 1
                await _pause(stop, reconnect_delay(failures, random.random()))
                failures += 1
                continue
            self.url, failures = url, 0
            self.connects += 1
            self.connected.set()
            socket = self.station.socket
            assert socket is not None
            closed = asyncio.ensure_future(socket.wait_closed())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({closed, stopped}, return_when=asyncio.FIRST_COMPLETED)
            closed.cancel()
            stopped.cancel()
            self.connected.clear()
            if stop.is_set():
                break
            self.drops += 1
            await self.station.close()
            turn += 1  # its gateway is gone: the next URL, after the charger's pause
            await _pause(stop, reconnect_delay(0, random.random()))
        self.connected.clear()
        await self.station.close()

    async def send(self, timeout: float, fresh: bool) -> bool:
        """Send the pending event, or (with `fresh`) a new one if none is pending; True when
        it was answered. A failure leaves it pending and closes the socket (the keeper then
        reconnects: a station that gets no answer does not trust its link)."""
        if self.pending is None:
            if not fresh:
                return False
            number = next(self.station.events)
            self.pending = event_payload(self.station.serial, number, time.time())
            self.created += 1
            self.sent_before = False
        if self.sent_before:
            self.resent += 1
        self.sent_before = True
        try:
            await self.station.call("SecurityEventNotification", self.pending, timeout)
        except (OSError, WebSocketException, StationFailed, TimeoutError) as error:
            self.failures[f"event: {error_name(error)}"] += 1
            # Not connected any more for the loops: a socket already closed fails at once,
            # and a loop that retried it before its keeper ran would never yield.
            self.connected.clear()
            await self.station.close()
            await asyncio.sleep(0)
            return False
        self.pending = None
        self.acked += 1
        return True


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds` or until `stop`, whichever is first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class Roaming:
    """This process's roaming stations, their keepers and the loops that send their events."""

    def __init__(self, roamers: list[Roamer], timeout: float) -> None:
        self.roamers = roamers
        self.timeout = timeout
        self.stop = asyncio.Event()
        self.fresh = False
        """Whether the loops create new events (else they only resend pending ones)."""
        first = asyncio.Semaphore(BOOT_IN_FLIGHT)
        self.keepers = [asyncio.ensure_future(r.keep(self.stop, timeout, first)) for r in roamers]
        self.loops: list[asyncio.Future[None]] = []

    def start_events(self, concurrency: int) -> None:
        """`concurrency` loops, each over its share of the stations, one CALL at a time."""
        self.fresh = True
        count = min(concurrency, len(self.roamers))
        self.loops = [
            asyncio.ensure_future(self._loop(self.roamers[w::count])) for w in range(count)
        ]

    async def _loop(self, mine: list[Roamer]) -> None:
        turn = 0
        while not self.stop.is_set() and (self.fresh or any(r.pending for r in mine)):
            roamer = mine[turn % len(mine)]
            turn += 1
            if not roamer.connected.is_set() or (not self.fresh and roamer.pending is None):
                if turn % len(mine) == 0:  # a whole round with nobody to serve: wait a little
                    await _pause(self.stop, DRAIN_POLL)
                continue
            await roamer.send(self.timeout, self.fresh)

    async def drain(self, timeout: float) -> None:
        """Stop creating events; wait (bounded) until every pending one is answered."""
        self.fresh = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self.loops), timeout)

    def status(self) -> dict[str, Any]:
        """Counts over this process's stations; `acked_upto`: serial -> highest answered
        event number (events of a station are numbered 1, 2, ... and answered in order)."""
        failures: Counter[str] = Counter()
        by_url: Counter[str] = Counter()
        for roamer in self.roamers:
            failures.update(roamer.failures)
            if roamer.connected.is_set():
                by_url[roamer.url] += 1
        return {
            "stations": len(self.roamers),
            "connected": sum(1 for r in self.roamers if r.connected.is_set()),
            "by_url": dict(by_url),
            "created": sum(r.created for r in self.roamers),
            "acked": sum(r.acked for r in self.roamers),
            "pending": sum(1 for r in self.roamers if r.pending is not None),
            "resent": sum(r.resent for r in self.roamers),
            "connects": sum(r.connects for r in self.roamers),
            "drops": sum(r.drops for r in self.roamers),
            "failures": dict(failures),
        }

    def acked_upto(self) -> dict[str, int]:
        return {r.station.serial: r.acked for r in self.roamers}

    async def close(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.keepers, *self.loops, return_exceptions=True)


def url_order(count: int, home: int, index: int) -> list[int]:
    """A station's order of `count` URLs (indexes): its home first, then the others rotated
    by `index`, so that the stations of a dead gateway spread evenly over the survivors."""
    others = [i for i in range(count) if i != home]
    shift = index % len(others) if others else 0
    return [home, *others[shift:], *others[:shift]]


def raise_file_limit() -> tuple[int, int]:
    """Raise this process's soft limit of open files to the hard one; (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# ---------------------------------------------------------------- the child process


class Pool:
    """This process's stations, one set per server (arm) it connects them to."""

    def __init__(self, credentials: Sequence[tuple[str, str]]) -> None:
        self.credentials = list(credentials)
        self.arms: dict[str, list[Station]] = {}
        self.roaming: Roaming | None = None

    async def hold(
        self, urls: list[str], orders: list[list[int]], timeout: float, wait: float
    ) -> dict[str, Any]:
        """Start every station roaming (station i tries `urls` in the order `orders[i]`, its
        home first; `timeout` for each attempt and answer) and wait until all are connected
        (bounded by `wait`); the status then."""
        if self.roaming is not None:
            return {"error": "already holding"}
        if len(orders) != len(self.credentials):
            return {"error": f"{len(orders)} URL orders for {len(self.credentials)} stations"}
        if not all(order and all(0 <= i < len(urls) for i in order) for order in orders):
            return {"error": "a URL order names no URL or one out of range"}
        roamers = [
            Roamer(Station(serial, password), [urls[i] for i in order])
            for (serial, password), order in zip(self.credentials, orders, strict=True)
        ]
        started = time.perf_counter()
        self.roaming = Roaming(roamers, timeout)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(r.connected.wait() for r in roamers)), wait)
        return {**self.roaming.status(), "seconds": time.perf_counter() - started}

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
        elif op == "hold":
            answer = await pool.hold(
                [str(u) for u in command["urls"]],
                [[int(i) for i in order] for order in command["orders"]],
                timeout,
                float(command["wait"]),
            )
        elif op in ("send", "status", "drain", "release") and pool.roaming is None:
            answer = {"error": f"{op} before hold"}
        elif op == "send":
            assert pool.roaming is not None
            pool.roaming.start_events(int(command["concurrency"]))
            answer = pool.roaming.status()
        elif op == "status":
            assert pool.roaming is not None
            answer = pool.roaming.status()
        elif op == "drain":
            assert pool.roaming is not None
            await pool.roaming.drain(timeout)
            answer = {**pool.roaming.status(), "acked_upto": pool.roaming.acked_upto()}
        elif op == "release":
            assert pool.roaming is not None
            await pool.roaming.close()
            answer = pool.roaming.status()
            pool.roaming = None
        elif op == "quit":
            break
        else:
            answer = {"error": f"unknown op {op!r}"}
        print(json.dumps({"op": op, **answer}), flush=True)
    for arm in list(pool.arms):
        await pool.close(arm)
    if pool.roaming is not None:
        await pool.roaming.close()


def main(argv: Sequence[str]) -> int:
    """`python -m chargepin.lab.ocpp_stations STATIONS_JSON`: [[serial, password], ...]."""
    if len(argv) != 1:
        print("usage: python -m chargepin.lab.ocpp_stations STATIONS_JSON", file=sys.stderr)
        return 2
    credentials = [(str(s), str(p)) for s, p in json.loads(Path(argv[0]).read_text())]
    raise_file_limit()  # a process of thousands of stations needs a descriptor each
    die_with_parent(signal.SIGKILL)  # a bench killed with -9 leaves no station behind
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
