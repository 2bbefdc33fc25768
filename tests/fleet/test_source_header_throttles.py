"""Behind a proxy the login and claim throttles count the client the trusted header names
(`--source-header`), as the per-source limits do (fleet/source_limits.client_address), never the
socket's peer: that is the proxy, and counting it would lock every user out together after one
attacker's guesses. Every request here comes from one peer, the proxy on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from chargepin.clock import FakeClock
from chargepin.core.claims import SOURCE_LOCKOUT as CLAIM_SOURCE_LOCKOUT
from chargepin.core.login_throttle import SOURCE_LOCKOUT
from chargepin.core.provisioning import StickerPayload
from chargepin.fleet.app import create_app
from chargepin.fleet.claims import source_of
from chargepin.fleet.models import ClaimSource
from chargepin.fleet.source_limits import SourceLimitSettings
from chargepin.fleet.vault import Vault
from tests.helpers.fleet_accounts import PASSWORD, login
from tests.helpers.fleet_factory import provision
from tests.helpers.fleet_settings import fleet_settings

PROXY = ("127.0.0.1", 40000)
ATTACKER, USER = "203.0.113.7", "198.51.100.20"


@pytest.fixture
def proxied(db_url: str, fleet_clock: FakeClock) -> Iterator[TestClient]:
    """The service behind a proxy that appends its client's address to X-Forwarded-For; the
    request rate limit off, so only the throttles answer."""
    limits = SourceLimitSettings(rate=0, header="X-Forwarded-For")
    settings = fleet_settings(db_url=db_url, source_limits=limits)
    app = create_app(settings, vault=Vault.generate(), clock=fleet_clock)
    with TestClient(app, client=PROXY) as client:
        yield client
    app.state.fleet.engine.dispose()


def via(client: TestClient, address: str) -> TestClient:
    """The proxy's requests for `address` (a client-sent entry before it, as a proxy that
    appends keeps it)."""
    return TestClient(client.app, client=PROXY, headers={"X-Forwarded-For": f"10.9.9.9, {address}"})


def test_one_client_s_wrong_passwords_lock_that_client_not_everyone_behind_the_proxy(
    proxied: TestClient,
) -> None:
    attacker, user = via(proxied, ATTACKER), via(proxied, USER)
    user.post("/register", json={"email": "real@example.com", "password": PASSWORD})
    wrong = {"password": "not the password at all"}
    answers = [
        attacker.post("/login", json={"email": f"user{i}@example.com", **wrong}).status_code
        for i in range(SOURCE_LOCKOUT.failures + 1)
    ]
    assert answers == [401] * SOURCE_LOCKOUT.failures + [429]
    good = {"email": "real@example.com", "password": PASSWORD}
    assert user.post("/login", json=good).status_code == 200
    assert attacker.post("/login", json=good).status_code == 429


def test_wrong_claims_count_against_the_client_the_header_names(proxied: TestClient) -> None:
    attacker, user = via(proxied, ATTACKER), via(proxied, USER)
    mine, theirs = provision(proxied, count=2)
    body = {"payload": StickerPayload(mine.serial, "0000000000ZZ").encode()}
    guessers = [login(attacker, f"guesser{n}@example.com") for n in range(5)]
    for headers in guessers:
        for _ in range(CLAIM_SOURCE_LOCKOUT.failures // len(guessers)):
            assert attacker.post("/chargers/claim", json=body, headers=headers).status_code == 403
    locked = attacker.post("/chargers/claim", json=body, headers=guessers[0])
    assert locked.status_code == 429 and "from your network" in locked.json()["detail"]
    with proxied.app.state.fleet.sessions() as db:  # type: ignore[attr-defined]
        assert db.get(ClaimSource, source_of(ATTACKER)) is not None
        assert db.get(ClaimSource, source_of(PROXY[0])) is None
    # Another client behind the same proxy claims with its sticker, after a wrong code too.
    owner = login(user, "installer@example.com")
    assert user.post("/chargers/claim", json=body, headers=owner).status_code == 403
    right = {"payload": theirs.sticker.encode()}
    assert user.post("/chargers/claim", json=right, headers=owner).status_code == 201
