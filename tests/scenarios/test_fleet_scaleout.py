"""Issue 12's proof on the real PostgreSQL: `chargepin fleet serve --workers 2 --no-ocpp` and two
`chargepin fleet gateway` processes on one new database; eight simulated chargers
(tests/helpers/ocpp_roaming.py), four on each gateway, each given both gateways' URLs as a load
balancer would; four owners at once, each with two chargers (one per gateway) and a member on
both (one friend of all four: an account's password hashing is the set-up's dearest step).

While the owners revoke their members (a phone removal and a re-key each) and change PINs, one
charger of gateway 0 has applied a ticket and holds its receipt, and has an event stored by
the gateway whose answer it never read: then gateway 0 is killed with SIGKILL. Its chargers
reconnect to gateway 1 with the charger's back-off, resend their unanswered events and get the
commands that waited for them. In the end every command is `applied` in the API, each was
applied by its charger once, and every event the chargers queued (before, during and after the
kill) is stored once: none missing, none twice.

Applied once: each outbox command has its op (a random per-command identity, migration 0015)
sealed in its tickets, and the charger answers a ticket whose op it applied with a receipt of
its state without applying it again (core.applied_ops). Without that, the command whose
receipt died with the gateway is applied twice: the test sees it (`command_key`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import secrets
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
import sqlalchemy
from websockets.exceptions import InvalidStatus

from chargepin.core import bond_statement
from chargepin.core.bond_statement import BondedPhone
from chargepin.core.pin import weakness
from chargepin.core.policy import FirmwareVersion
from chargepin.core.tickets import OP, Ticket
from chargepin.fleet.factory import Provisioned
from chargepin.fleet.operations import provision_to_dir
from chargepin.lab.ports import free_ports
from chargepin.lab.processes import Service
from chargepin.phone.fleet_client import FleetClient
from tests.helpers.fleet_settings import SERVE_HASHING, fleet_settings
from tests.helpers.ocpp_roaming import RoamingStation
from tests.helpers.ocpp_station import station as station_link
from tests.helpers.postgres import POSTGRES, new_database
from tests.helpers.processes import Bench, until, until_listening

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not POSTGRES, reason="several processes on one fleet need PostgreSQL"),
]

CHARGERS = 8
OWNERS = 4
"""Each owner has two chargers, one on each gateway, and the member on both."""
MEMBER = "member@example.com"
PASSWORD = "correct horse battery"
DOOMED, SURVIVOR = 0, 1
WAIT = 20.0
"""Seconds any awaited condition gets (a bound against a hang on a loaded machine)."""
START = 60.0
"""Seconds the processes get to start and migrate the new database."""
EVENTS_PER_PHASE = 2


@dataclass
class Owner:
    client: FleetClient
    chargers: list[Provisioned]
    member_id: int = 0
    worker: int = 0
    """The API process (its pid, GET /health) that served this owner's requests."""
    pins: dict[str, list[str]] = field(default_factory=dict)
    """Per charger, the PINs this owner set, in order."""


class Fleet:
    """The processes of the test on one PostgreSQL database."""

    def __init__(self, bench: Bench, db: str) -> None:
        self.bench, self.db = bench, db
        self.keys = bench.directory / "vault-key.json"
        self.api_port, *self.gateway_ports = free_ports(3)
        self.api: Service | None = None
        self.gateways: list[Service] = []
        self.engine = sqlalchemy.create_engine(db, pool_size=1, max_overflow=0)

    async def start(self) -> None:
        """The API's two workers and both gateways at once, on the new database (one of them
        migrates it, the others wait for it: db.migrate's advisory lock)."""
        common = ["--db", self.db, "--vault-key-file", str(self.keys), *SERVE_HASHING]
        self.api = self.bench.start(
            "fleet", "serve", "--workers", "2", "--no-ocpp", "--port", str(self.api_port),
            *common, name="api",
        )  # fmt: skip
        for index, port in enumerate(self.gateway_ports):
            self.gateways.append(
                self.bench.start(
                    "fleet", "gateway", "--port", str(port), *common, name=f"gateway{index}"
                )
            )
        for port in (self.api_port, *self.gateway_ports):
            await until_listening(port, START)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def gateway_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.gateway_ports]

    def stop_api(self) -> None:
        """SIGTERM to the API's supervisor, which stops its workers; any left are killed."""
        if self.api is None or self.api.process.poll() is not None:
            return
        with contextlib.suppress(psutil.NoSuchProcess):
            children = psutil.Process(self.api.pid).children(recursive=True)
        with contextlib.suppress(Exception):
            self.api.stop(signal.SIGTERM, 20.0)
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()

    def stored_events(self) -> Counter[str]:
        """Rows of station_security_events per event id."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sqlalchemy.text(
                    "SELECT event_id, count(*) FROM station_security_events GROUP BY event_id"
                )
            ).all()
        return Counter({str(name): int(count) for name, count in rows})

    def command_ops(self) -> set[str]:
        """The op of every command in the outbox."""
        with self.engine.connect() as connection:
            rows = connection.execute(sqlalchemy.text("SELECT op FROM csms_commands")).all()
        return {str(op) for (op,) in rows}

    def close(self) -> None:
        self.engine.dispose()
        self.stop_api()
        self.bench.close()


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    with new_database() as db:
        made = Fleet(Bench(tmp_path, phones=0), db)
        try:
            yield made
        finally:
            made.close()


async def worker_of(client: FleetClient) -> int:
    answer = await client._http.get("/health")
    assert answer.status_code == 200, answer.text
    return int(answer.json()["worker"])


async def client_on(url: str, other_than: int | None) -> tuple[FleetClient, int]:
    """A client whose one keep-alive connection is served by an API worker other than
    `other_than` (any when None): fresh connections until one lands there (bounded)."""

    async def attempt() -> tuple[FleetClient, int] | None:
        client = FleetClient(
            url,
            transport=httpx.AsyncHTTPTransport(
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1)
            ),
        )
        worker = await worker_of(client)
        if worker != other_than:
            return client, worker
        await client.close()
        return None

    return await until(attempt, f"a connection served by a worker other than {other_than}", START)


def new_pin(used: set[str]) -> str:
    while True:
        digits = f"{secrets.randbelow(10**6):06d}"
        if weakness(digits) is None and digits not in used:
            used.add(digits)
            return digits


def phone_of(serial: str) -> str:
    """The member's phone on charger `serial` (an address of its own per charger)."""
    digest = bytes.fromhex(hashlib.sha256(serial.encode()).hexdigest()[:10])
    return "C2:" + ":".join(f"{b:02X}" for b in digest)


def command_key(ticket: Ticket) -> str:
    """What makes a command one command on the charger's side: its op, which every ticket
    sealed from the outbox carries for these chargers' firmware."""
    op = ticket.arg(OP)
    assert op is not None, f"a {ticket.action.value} ticket without an op"
    return op


async def set_up_owner(
    index: int, chargers: list[Provisioned], member: FleetClient, client: FleetClient, worker: int
) -> Owner:
    email = f"owner{index}@example.com"
    await client.register(email, PASSWORD)
    await client.login(email, PASSWORD)
    owner = Owner(client, chargers, worker=worker)
    for charger in chargers:
        await client.claim(charger.sticker.encode())
        await member.accept(await client.invite(charger.serial, MEMBER))
        phone = BondedPhone(
            phone_of(charger.serial),
            2,
            bond_statement.bond_id(charger.secret, charger.serial, secrets.token_bytes(16)),
        )
        await member.relay_bond(
            charger.serial, bond_statement.make(charger.secret, charger.serial, phone)
        )
        owner.pins[charger.serial] = []
    members = await client.members(chargers[0].serial)
    owner.member_id = next(m["user_id"] for m in members if m["role"] == "user")
    return owner


async def change_pin(owner: Owner, serial: str, used: set[str]) -> int:
    pin = new_pin(used)
    answer = await owner.client._call(
        "POST", f"/chargers/{serial}/commands", json={"action": "change_pin", "args": {"pin": pin}}
    )
    owner.pins[serial].append(pin)
    return int(answer["id"])


async def all_applied(owners: list[Owner], per_charger: int) -> bool:
    for owner in owners:
        for charger in owner.chargers:
            commands = await owner.client.commands(charger.serial)
            if len(commands) != per_charger or {c["state"] for c in commands} != {"applied"}:
                return False
    return True


async def test_a_gateway_killed_while_owners_revoke_and_change_pins_loses_and_doubles_nothing(
    fleet: Fleet,
) -> None:
    started = time.monotonic()
    laps: dict[str, float] = {}

    def lap(name: str) -> None:
        laps[name] = round(time.monotonic() - started, 2)

    await fleet.start()
    lap("started")
    run, _ = provision_to_dir(
        fleet_settings(db_url=fleet.db, vault_key_file=fleet.keys),
        fleet.bench.directory / "factory",
        count=CHARGERS,
        model="Pulsar Max",
        firmware=FirmwareVersion.parse("6.11.2"),
        produced=dt.date(2025, 9, 1),
    )
    chargers = list(run.chargers)
    # Charger i on gateway i % 2: each owner has one on the gateway that will die.
    stations = [
        RoamingStation(fleet.gateway_urls(), c.serial, c.secret, first=i % 2)
        for i, c in enumerate(chargers)
    ]
    by_serial = {s.serial: s for s in stations}
    doomed = stations[DOOMED::2]
    held = stations[DOOMED]
    clients: list[tuple[FleetClient, int]] = []
    member = FleetClient(fleet.api_url)
    owners: list[Owner] = []
    try:
        # Owners alternate between the two API workers (each owner's one connection); they set
        # up their chargers and members at once.
        for _ in range(OWNERS):
            clients.append(await client_on(fleet.api_url, clients[-1][1] if clients else None))
        await member.register(MEMBER, PASSWORD)
        await member.login(MEMBER, PASSWORD)
        owners = await asyncio.gather(
            *(
                set_up_owner(i, chargers[2 * i : 2 * i + 2], member, *clients[i])
                for i in range(OWNERS)
            )
        )
        workers = {owner.worker for owner in owners}
        lap("owners")
        assert len(workers) == 2, workers
        for station in stations:
            station.start()

        async def all_booted() -> bool:
            return all(s.connected.is_set() for s in stations)

        await until(all_booted, "every station booted", WAIT)
        lap("booted")
        assert [s.gateway for s in stations] == [i % 2 for i in range(CHARGERS)]
        used: set[str] = set()

        # Before: a PIN change on every charger and events from every station, all through.
        for station in stations:
            for _ in range(EVENTS_PER_PHASE):
                station.events.add("before")
        await asyncio.gather(*(change_pin(o, c.serial, used) for o in owners for c in o.chargers))
        await until(lambda: all_applied(owners, 1), "the first PIN changes applied", WAIT)

        # During: owners revoke their members (a phone removal and a re-key on each charger)
        # and change PINs, all at once; the first ticket to reach the held charger is applied
        # and its receipt kept. Once an event it sent after that is stored (its answer is never
        # read: the station reads nothing while it holds), gateway 0 is killed.
        lap("before")
        held.hold_next_ticket()
        killed = asyncio.Event()

        async def owner_acts(owner: Owner) -> None:
            for charger in owner.chargers:
                revoked = await owner.client.revoke(charger.serial, owner.member_id, rekey=True)
                assert len(revoked["commands"]) == 2, revoked
                assert revoked["phones_to_remove"] == [phone_of(charger.serial)]
            for charger in owner.chargers:
                await change_pin(owner, charger.serial, used)
            # After the kill: PINs changed while half the chargers are away.
            await killed.wait()
            for charger in owner.chargers:
                await change_pin(owner, charger.serial, used)

        for station in stations:
            for _ in range(EVENTS_PER_PHASE):
                station.events.add("during")
        acting = [asyncio.create_task(owner_acts(o)) for o in owners]

        async def holding() -> bool:
            return held.held.is_set()

        await until(holding, "a ticket reaches the held charger", WAIT)
        held_key = command_key(held.applied[-1])
        held.events.add("while holding")

        async def unread_event_stored() -> str | None:
            name = held.unread_event()
            if name is None:
                return None
            stored = await asyncio.to_thread(fleet.stored_events)
            return name if stored[name] else None

        unread = await until(unread_event_stored, "the held station's event stored", WAIT)
        in_flight = {s.serial: s.events.in_flight for s in doomed}
        killed_at = time.monotonic()
        lap("kill")
        assert await asyncio.to_thread(fleet.gateways[DOOMED].stop, signal.SIGKILL) == (
            -signal.SIGKILL
        )
        killed.set()
        for station in stations:
            for _ in range(EVENTS_PER_PHASE):
                station.events.add("outage")
        # A stranger who knows the held charger is away tries its serial on the survivor.
        with pytest.raises(InvalidStatus) as refused:
            async with station_link(
                fleet.gateway_urls()[SURVIVOR], held.serial, b"", time.time, password="x" * 40
            ):
                pass
        assert refused.value.response.status_code == 401

        # After: every charger of gateway 0 on gateway 1, then more events from all of them.
        async def all_on_survivor() -> bool:
            return all(s.gateway == SURVIVOR for s in stations)

        await until(all_on_survivor, "every charger on the surviving gateway", WAIT)
        reconnected = max(s.connections[-1][1] for s in doomed) - killed_at
        for station in stations:
            for _ in range(EVENTS_PER_PHASE):
                station.events.add("after")
        await asyncio.gather(*acting)
        per_charger = 5  # change_pin, remove_phone, rekey, change_pin, change_pin

        async def drained() -> bool:
            return all(not s.events.pending for s in stations)

        await until(lambda: all_applied(owners, per_charger), "every command applied", WAIT)
        await until(drained, "every event answered", WAIT)
        settled = time.monotonic() - killed_at

        # Both API workers served the owners; the survivor's chargers never lost their link.
        assert len({o.worker for o in owners}) == 2
        for station in stations[SURVIVOR::2]:
            assert [gateway for gateway, _ in station.connections] == [SURVIVOR], station.failures
        for station in doomed:
            assert [gateway for gateway, _ in station.connections] == [DOOMED, SURVIVOR], (
                station.serial,
                station.failures,
            )

        # Every command reached its charger and was applied there once (per op); the one whose
        # receipt died with the gateway came again and was answered without being applied.
        twice: list[tuple[str, str]] = []
        applied_ops: set[str] = set()
        for owner in owners:
            for charger in owner.chargers:
                station = by_serial[charger.serial]
                commands = await owner.client.commands(charger.serial)
                counts = Counter(command_key(t) for t in station.applied)
                twice += [(charger.serial, key) for key, n in counts.items() if n > 1]
                applied_ops |= set(counts)
                # One command applied per command the API shows, of the same actions.
                assert sorted(t.action.value for t in station.applied) == sorted(
                    c["action"] for c in commands
                ), (charger.serial, counts, commands)
                # The last PIN the owner chose is the charger's.
                custom = station.state.pin.custom_pin
                assert custom is not None and custom.digits == owner.pins[charger.serial][-1]
        assert twice == [], f"applied twice: {twice}"
        assert applied_ops == await asyncio.to_thread(fleet.command_ops)
        assert held_key in [command_key(t) for t in held.state.repeats], held.state.repeats
        repeats = sum(len(s.state.repeats) for s in stations)
        commands_total = len(applied_ops)

        # Every event queued was stored once: none missing, none twice, and the unread one was
        # sent again and not stored again.
        stored = await asyncio.to_thread(fleet.stored_events)
        queued = Counter(name for s in stations for name in s.events.queued)
        assert set(stored) == set(queued), (set(queued) - set(stored), set(stored) - set(queued))
        assert set(stored.values()) == {1}, {k: v for k, v in stored.items() if v > 1}
        assert held.events.sends[unread] == 2, held.events.sends
        resent = sorted(name for s in stations for name in s.events.resent())
        assert unread in resent

        # The owners' workers again, from their own connections.
        final_workers = {await worker_of(o.client) for o in owners}
        print(
            f"measured: {CHARGERS} chargers, {OWNERS} owners, API workers {sorted(workers)} "
            f"(again {sorted(final_workers)}); gateway kill -9 -> all {len(doomed)} of its "
            f"chargers on the survivor in {reconnected:.2f} s; every command applied and every "
            f"event answered {settled:.2f} s after the kill; {commands_total} commands, "
            f"{sum(queued.values())} events ({len(resent)} resent: {resent}; in flight at the "
            f"kill: {in_flight}); {repeats} tickets repeated and answered without applying; whole "
            f"test {time.monotonic() - started:.1f} s ({laps})"
        )
    finally:
        for station in stations:
            await station.stop()
        for client, _ in clients:
            await client.close()
        await member.close()
