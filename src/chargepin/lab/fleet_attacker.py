"""The fleet service under attack, set up: the real app behind uvicorn on 127.0.0.1, seeded by
the factory, and HTTP clients that each come from their own loopback address.

The service counts wrong passwords and claim codes per account and per source address
(core/login_throttle.py, core/claims.py), so who sends a request from where matters. Linux
routes all of 127.0.0.0/8 to loopback: each attacker and each honest user here binds its own
address (127.0.0.2, 127.0.0.3, ...), as strangers on different networks would, and nothing
leaves the machine. `chargepin lab attack fleet-http` (lab/attacks/fleet_http.py) runs on this.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, select

from chargepin.clock import SystemClock
from chargepin.core.attestation import AttestedState, attest
from chargepin.core.epochs import epoch_pin, pin_fingerprint
from chargepin.core.errors import ChargepinError
from chargepin.core.lockout import LockoutState
from chargepin.core.provisioning import CLAIM_ALPHABET, CLAIM_CODE_LENGTH, StickerPayload
from chargepin.fleet.app import create_app
from chargepin.fleet.factory import Provisioned
from chargepin.fleet.models import Charger, User
from chargepin.fleet.settings import FleetSettings
from chargepin.lab.live_server import serve
from chargepin.lab.local_fleet import PASSWORD, LocalFleet

APP_VERSION = {"X-App-Version": "2.3.0"}
"""The header of a current app: the PIN endpoints answer 426 without it."""
REQUEST_TIMEOUT = 60.0
"""Seconds any one request may take before the lab gives up on it (a hung service)."""
MODEL, FIRMWARE = "Pulsar Max", "6.11.2"
"""A mandatory-PIN charger: Charger Info always carries a PIN, the full reveal path."""
IMPATIENT_LOCK_TIMEOUT = 1.0
"""Seconds the second service waits for a held write lock before it answers 503."""
FIRST_SOURCE = 2
"""127.0.0.1 is left to whatever else runs on the machine; sources start at 127.0.0.2."""


class LabSetupError(ChargepinError):
    """The lab could not set the service up (a database that is not empty, a seed that failed)."""


class Sources:
    """One loopback address per actor: 127.0.0.2, 127.0.0.3, ... (at most 253 of them)."""

    def __init__(self) -> None:
        self._numbers = itertools.count(FIRST_SOURCE)

    def next(self) -> str:
        number = next(self._numbers)
        if number > 254:
            raise LabSetupError("the lab ran out of loopback addresses (127.0.0.2-254)")
        return f"127.0.0.{number}"


@dataclass
class Target:
    """The service under attack and what the lab made in it."""

    base_url: str
    fleet: LocalFleet
    rng: random.Random
    db_url: str
    sources: Sources = field(default_factory=Sources)
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        url = urlsplit(self.base_url)
        assert url.hostname is not None and url.port is not None
        return url.hostname, url.port

    def client(
        self, source: str | None = None, connections: int = 10, base_url: str | None = None
    ) -> httpx.AsyncClient:
        """An HTTP client whose connections come from `source` (a fresh address by default),
        to the service (or to the one at `base_url`)."""
        transport = httpx.AsyncHTTPTransport(
            local_address=source or self.sources.next(),
            limits=httpx.Limits(max_connections=connections),
        )
        client = httpx.AsyncClient(
            base_url=base_url or self.base_url, transport=transport, timeout=REQUEST_TIMEOUT
        )
        self.clients.append(client)
        return client

    def raw_socket(self, source: str | None = None) -> socket.socket:
        """A plain TCP connection to the service from `source`, for what httpx will not send."""
        return socket.create_connection(
            self.address, timeout=10.0, source_address=(source or self.sources.next(), 0)
        )

    async def account(self, http: httpx.AsyncClient, email: str) -> dict[str, str]:
        """Register `email` and log in from `http`'s address; the headers an app sends."""
        credentials = {"email": email, "password": PASSWORD}
        expect(f"register {email}", await http.post("/register", json=credentials), 201)
        login = expect(f"log in {email}", await http.post("/login", json=credentials), 200)
        return {"Authorization": f"Bearer {login.json()['token']}", **APP_VERSION}

    def provision(self, count: int) -> list[Provisioned]:
        """Chargers made by the factory (`chargepin fleet provision`) on the service's database."""
        return self.fleet.provision(MODEL, FIRMWARE, count=count)

    def wrong_code(self) -> str:
        """A well-formed claim code, drawn from the run's seed (right with odds 2**-60)."""
        return "".join(self.rng.choice(CLAIM_ALPHABET) for _ in range(CLAIM_CODE_LENGTH))

    def wrong_sticker(self, serial: str) -> str:
        return StickerPayload(serial, self.wrong_code()).encode()

    def wrong_password(self) -> str:
        return f"guess-{self.rng.getrandbits(64):016x}"

    def claim_lockout(self, email: str) -> LockoutState:
        """An account's claim lockout as the database holds it (the referee's read)."""
        with self.fleet.state.sessions() as db:
            user = db.scalar(select(User).where(User.email == email))
            if user is None:
                raise LabSetupError(f"no account {email} in the database")
            return LockoutState.from_dict(user.claim_lockout or {})

    def pending_change(self, serial: str) -> object:
        """The PIN change the fleet holds as pending for `serial` (the referee's read)."""
        with self.fleet.state.sessions() as db:
            return db.scalar(select(Charger.pending).where(Charger.serial == serial))

    @contextlib.contextmanager
    def impatient(self) -> Iterator[str]:
        """A second service on the same database and vault that waits IMPATIENT_LOCK_TIMEOUT
        for another writer's lock instead of 30 s; its base URL. (The attacked service keeps
        the default: its parallel claims on SQLite wait for each other's write lock.)"""
        state = self.fleet.state
        settings = FleetSettings(db_url=self.db_url, db_lock_timeout=IMPATIENT_LOCK_TIMEOUT)
        app = create_app(settings, vault=state.vault, clock=state.clock)
        try:
            with serve(app) as base_url:
                yield base_url
        finally:
            app.state.fleet.engine.dispose()

    def users(self) -> int:
        """Accounts in the database (the referee's read, not the attacker's)."""
        with self.fleet.state.sessions() as db:
            return int(db.scalar(select(func.count()).select_from(User)) or 0)


def expect(what: str, response: httpx.Response, status: int) -> httpx.Response:
    """`response` if it has `status`, else LabSetupError: a step the attacks rely on failed."""
    if response.status_code != status:
        raise LabSetupError(
            f"{what}: expected {status}, the service answered {response.status_code} "
            f"{response.text[:300]}"
        )
    return response


def open_info(made: Provisioned, epoch: int) -> dict[str, object]:
    """The reconcile body a phone relays from this charger's open info at `epoch`, PIN on:
    what any central in range reads (the lab plays the charger, which holds the secret)."""
    fingerprint = pin_fingerprint(
        made.secret, made.serial, epoch_pin(made.secret, made.serial, epoch)
    )
    state = AttestedState(epoch, True, fingerprint)
    return {
        "epoch": epoch,
        "fingerprint": fingerprint.hex(),
        "pin_enabled": True,
        "attestation": attest(made.secret, made.serial, state).hex(),
    }


@contextlib.contextmanager
def database(url: str | None) -> Iterator[tuple[str, str]]:
    """The database to attack: `url`, or a fresh SQLite file in a temporary directory. Yields
    (url, what to call it in the report)."""
    if url is not None:
        yield url, url.split(":", 1)[0].split("+", 1)[0]
        return
    with tempfile.TemporaryDirectory(prefix="chargepin-fleet-http-") as directory:
        yield f"sqlite:///{Path(directory) / 'fleet.db'}", "sqlite"


@contextlib.asynccontextmanager
async def target(url: str, seed: int) -> AsyncIterator[Target]:
    """The fleet app on `url` (which must hold no accounts yet) behind uvicorn on 127.0.0.1."""
    fleet = LocalFleet.start(url, SystemClock())
    try:
        with serve(fleet.app) as base_url:
            attacked = Target(base_url, fleet, random.Random(seed), url)
            if attacked.users():
                raise LabSetupError(
                    f"the database at {url} already has accounts; the attacks lock accounts and "
                    "addresses for minutes, so give the lab an empty database (or none: a fresh "
                    "SQLite file is the default)"
                )
            try:
                yield attacked
            finally:
                for client in attacked.clients:
                    await client.aclose()
    finally:
        fleet.dispose()
