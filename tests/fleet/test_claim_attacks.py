"""Issue 9, the claim attacks, replayed through the real HTTP API on SQLite and PostgreSQL.

Each test is named after the attack it replays; the fake clock moves time, nothing sleeps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from chargepin.clock import FakeClock
from chargepin.core.lockout import LockoutState
from chargepin.core.provisioning import StickerPayload
from chargepin.fleet.app import create_app
from chargepin.fleet.claims import code_matches, source_of
from chargepin.fleet.db import make_engine
from chargepin.fleet.models import Charger, ClaimSource, User
from chargepin.fleet.vault import Vault, key_id
from tests.helpers.fleet_accounts import login, signed_in
from tests.helpers.fleet_factory import claim, provision
from tests.helpers.fleet_records import charger_row
from tests.helpers.fleet_settings import fleet_settings

WRONG_CODE = "0000000000ZZ"


def from_source(client: TestClient, host: str) -> TestClient:
    """The same app, called from another network address (request.client.host)."""
    return TestClient(client.app, client=(host, 40000))


def wrong(client: TestClient, headers: dict[str, str], serial: str) -> httpx.Response:
    body = {"payload": StickerPayload(serial, WRONG_CODE).encode()}
    return client.post("/chargers/claim", json=body, headers=headers)


def in_parallel(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def account_failures(client: TestClient, email: str) -> LockoutState:
    with client.app.state.fleet.sessions() as db:  # type: ignore[attr-defined]
        user = db.scalar(select(User).where(User.email == email))
        assert user is not None
        return LockoutState.from_dict(user.claim_lockout or {})


def source_state(client: TestClient, host: str) -> LockoutState | None:
    with client.app.state.fleet.sessions() as db:  # type: ignore[attr-defined]
        row = db.get(ClaimSource, source_of(host))
        return None if row is None else LockoutState.from_dict(row.claim_lockout)


def test_fifty_parallel_bad_claims_get_no_500_and_every_refusal_is_counted(
    client: TestClient,
) -> None:
    """Point 3: a wrong claim counted itself on a second pooled connection; 20 parallel ones
    emptied the pool (500 "QueuePool limit"), and the refusals that got a 500 were never
    counted (40 parallel wrong codes recorded 2 failures). Now: one connection per request, the
    count in the refusing transaction, committed with the refusal."""
    (made,) = provision(client)
    emails = [f"prober{n}@example.com" for n in range(50)]
    accounts = signed_in(client, emails)  # signing in is not the subject: one argon2 hash

    answers = in_parallel(
        [lambda headers=headers: wrong(client, headers, made.serial) for headers in accounts]
    )

    statuses = sorted(answer.status_code for answer in answers)
    # The source's lock (10 wrong codes from one address) answers the rest 429; none is lost.
    assert statuses == [403] * 10 + [429] * 40, statuses
    for email in emails:  # each refusal cost its own account exactly one failure
        assert len(account_failures(client, email).failures) == 1, email
    source = source_state(client, "testclient")
    assert source is not None and source.locked_until is not None
    assert claim(client, login(client, "installer@example.com"), made).status_code == 201


def test_a_wrong_claim_needs_no_second_connection(db_url: str, fleet_clock: FakeClock) -> None:
    """Point 3, deterministic: on a pool of one connection a wrong claim used to wait for a
    second one (to count itself) that its own request held: 500 after the pool timeout."""
    engine = make_engine(db_url, pool_size=1, max_overflow=0, pool_timeout=5)
    app = create_app(
        fleet_settings(db_url=db_url), vault=Vault.generate(), clock=fleet_clock, engine=engine
    )
    try:
        with TestClient(app) as one:
            (made,) = provision(one)
            prober = login(one, "prober@example.com")
            for _ in range(5):
                assert wrong(one, prober, made.serial).status_code == 403
            assert wrong(one, prober, made.serial).status_code == 429
            assert claim(one, login(one, "owner@example.com"), made).status_code == 201
    finally:
        engine.dispose()


def test_parallel_wrong_claims_of_one_account_count_against_one_limit(
    client: TestClient,
) -> None:
    """Point 7: a check-then-act race let 12 parallel wrong claims all be evaluated against a
    limit of 5. Now the account's row is locked first: 5 are refused as wrong, the rest 429."""
    made = provision(client, count=3)
    prober = login(client, "racer@example.com")

    answers = in_parallel(
        [lambda n=n: wrong(client, prober, made[n % 3].serial) for n in range(12)]
    )

    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [403] * 5 + [429] * 7, statuses
    state = account_failures(client, "racer@example.com")
    assert state.locked_until is not None and state.failures == ()


def test_strangers_wrong_codes_do_not_block_the_installers_sticker(
    client: TestClient, fleet_clock: FakeClock
) -> None:
    """Point 5: five wrong codes from any accounts locked the charger, and the installer's
    right sticker got 429 (Retry-After 300, doubling to 24 h). Now the code is checked first:
    the strangers lock themselves (account and network), the installer claims."""
    (made,) = provision(client)
    strangers = from_source(client, "203.0.113.9")
    *pair, last = signed_in(strangers, [f"stranger{n}@example.com" for n in range(3)])
    for headers in pair:  # 10 wrong codes: two accounts and their network are locked
        for _ in range(5):
            assert wrong(strangers, headers, made.serial).status_code == 403
        locked = wrong(strangers, headers, made.serial)
        assert locked.status_code == 429 and locked.headers["Retry-After"] == "300"
        assert "from this account" in locked.json()["detail"]
    third = wrong(strangers, last, made.serial)
    assert third.status_code == 429 and "from your network" in third.json()["detail"]
    assert wrong(client, login(client, "near@example.com"), made.serial).status_code == 403

    installer = from_source(client, "198.51.100.20")
    assert claim(installer, login(installer, "installer@example.com"), made).status_code == 201

    # Even from the strangers' own (locked) network a clean account's right code is served.
    (second,) = provision(client)
    neighbour = login(strangers, "neighbour@example.com")
    assert claim(strangers, neighbour, second).status_code == 201

    # The strangers keep paying: their next lock lasts twice as long.
    fleet_clock.advance(300)
    headers = login(strangers, "stranger0@example.com")
    for _ in range(5):
        wrong(strangers, headers, "CP99999999")
    again = wrong(strangers, headers, "CP99999999")
    assert again.status_code == 429 and again.headers["Retry-After"] == "600"


def test_a_locked_network_refuses_accounts_that_failed_whatever_their_code(
    client: TestClient, fleet_clock: FakeClock
) -> None:
    """Point 5: many free accounts from one network. Once it is locked, an account of it that
    guessed wrong is refused even with a right code (429, so a hit is not learned), and a fresh
    account gets a single guess before its own failure counts against it too."""
    made = provision(client, count=3)
    network = from_source(client, "2001:db8:5:6::1")
    guessers = signed_in(network, [f"guesser{n}@example.com" for n in range(5)])
    for headers in guessers:
        for _ in range(2):
            assert wrong(network, headers, made[0].serial).status_code == 403
    # Another address in the same /64 is the same network.
    same = from_source(client, "2001:db8:5:6:abcd::7")

    refused = claim(same, guessers[0], made[0])
    assert refused.status_code == 429
    assert "from your network" in refused.json()["detail"]
    fresh = login(same, "fresh@example.com")
    blocked = wrong(same, fresh, made[1].serial)
    assert blocked.status_code == 429  # refused, and it cost the fresh account a failure
    assert len(account_failures(client, "fresh@example.com").failures) == 1
    assert claim(same, fresh, made[1]).status_code == 429
    # A clean account of that network, and anyone elsewhere, claim with the right code.
    assert claim(same, login(same, "clean@example.com"), made[1]).status_code == 201
    elsewhere = from_source(client, "2001:db8:5:7::1")
    assert claim(elsewhere, login(elsewhere, "other@example.com"), made[2]).status_code == 201

    fleet_clock.advance(300)
    assert claim(network, guessers[0], made[0]).status_code == 201


def test_unknown_unclaimed_and_claimed_serials_answer_alike_to_a_wrong_code(
    client: TestClient,
) -> None:
    """Point 7: 409 (claimed) vs 403 (unknown, unclaimed) vs 429 (a locked charger) told a
    prober which serials exist and which are sold. Now a wrong code gets one answer, and each
    one counts (the 409 probes were free)."""
    claimed, unclaimed = provision(client, count=2)
    assert claim(client, login(client, "owner@example.com"), claimed).status_code == 201
    prober = login(client, "prober@example.com")

    answers = [wrong(client, prober, s) for s in ("CP99999999", unclaimed.serial, claimed.serial)]

    assert {a.status_code for a in answers} == {403}
    assert answers[0].json() == answers[1].json() == answers[2].json()
    assert len(account_failures(client, "prober@example.com").failures) == 3
    for _ in range(2):
        assert wrong(client, prober, claimed.serial).status_code == 403
    assert wrong(client, prober, claimed.serial).status_code == 429


def test_a_leaked_database_holds_only_keyed_serial_bound_claim_digests(
    client: TestClient,
) -> None:
    """Point 7: claim codes were stored as unsalted SHA-256 of 60-bit codes, so a leaked
    database of unclaimed chargers gave each code up to a GPU-minute of hashing. Now the digest
    is an HMAC under a key derived from the vault (not in the database), bound to the serial."""
    first, second = provision(client, count=2)
    vault = client.app.state.fleet.vault  # type: ignore[attr-defined]
    row = charger_row(client, first.serial)
    stored = row.claim_code_hash
    assert stored is not None and len(stored) == 41
    assert stored[1:9] == key_id(vault.current)
    assert hashlib.sha256(first.claim_code.encode()).digest() not in stored
    # A digest copied onto another charger's row does not verify there.
    assert not code_matches(vault, stored, second.serial, first.claim_code)
    with client.app.state.fleet.sessions() as db, db.begin():  # type: ignore[attr-defined]
        db.execute(
            update(Charger).where(Charger.serial == second.serial).values(claim_code_hash=stored)
        )
    moved = StickerPayload(second.serial, first.claim_code).encode()
    thief = login(client, "thief@example.com")
    assert client.post("/chargers/claim", json={"payload": moved}, headers=thief).status_code == 403


def test_claims_keep_working_across_a_key_rotation_and_from_legacy_digests(
    client: TestClient,
) -> None:
    """A sticker printed before `fleet rotate-key` still claims after it (the digest names its
    vault key, and rotation keeps old keys); a bare SHA-256 digest from before issue 9 too."""
    before, legacy = provision(client, count=2)
    vault = client.app.state.fleet.vault  # type: ignore[attr-defined]
    old_id = key_id(vault.current)
    vault.rotate()
    (after,) = provision(client)
    assert charger_row(client, after.serial).claim_code_hash[1:9] == key_id(vault.current) != old_id
    with client.app.state.fleet.sessions() as db, db.begin():  # type: ignore[attr-defined]
        db.execute(
            update(Charger)
            .where(Charger.serial == legacy.serial)
            .values(claim_code_hash=hashlib.sha256(legacy.claim_code.encode()).digest())
        )
    installer = login(client, "installer@example.com")
    for made in (before, legacy, after):
        assert claim(client, installer, made).status_code == 201, made.serial
