"""Throttle rows are forgotten once they decide nothing (issue 9, point 7), over real HTTP.

Before: every wrong password, every login and every wrong claim code from a new source left a
row in `login_throttles` or `claim_sources` for ever, so a stream of failures from ever new
addresses grew both without bound. Now each write of such a row deletes a batch of expired ones
(fleet/pruning.py). The tests stream failures from many sources on the fleet's fake clock and
check both that the tables stay small and that every throttle still holds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from chargepin.clock import FakeClock
from chargepin.core.provisioning import StickerPayload
from chargepin.fleet import operations
from chargepin.fleet.models import ClaimSource, LoginThrottle
from chargepin.lab.local_fleet import LocalFleet
from tests.helpers.fleet_accounts import PASSWORD, login, signed_in
from tests.helpers.fleet_factory import provision
from tests.helpers.fleet_settings import fleet_settings, start_fleet

WRONG = "not the password at all"
WRONG_CODE = "0000000000ZZ"


@pytest.fixture
def fleet(db_url: str, fleet_clock: FakeClock) -> Iterator[LocalFleet]:
    fleet = start_fleet(db_url, fleet_clock)
    yield fleet
    fleet.dispose()


def rows(fleet: LocalFleet, model: type[LoginThrottle | ClaimSource]) -> int:
    with fleet.state.sessions() as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


def from_source(fleet: LocalFleet, host: str) -> TestClient:
    return TestClient(fleet.app, client=(host, 40000))


def wrong_login(fleet: LocalFleet, host: str, email: str) -> int:
    response = from_source(fleet, host).post("/login", json={"email": email, "password": WRONG})
    return response.status_code


@pytest.mark.slow
def test_login_throttle_rows_stay_bounded_while_the_throttles_hold(
    fleet: LocalFleet, fleet_clock: FakeClock
) -> None:
    main = TestClient(fleet.app)
    login(main, "owner@example.com")
    rounds, per_round = 6, 6  # each wrong login costs an argon2 verification
    sizes = []
    for r in range(rounds):  # half a day apart: made-up accounts from ever new sources
        for n in range(per_round):
            assert wrong_login(fleet, f"10.{r}.{n}.1", f"ghost-{r}-{n}@example.com") == 401
        sizes.append(rows(fleet, LoginThrottle))
        fleet_clock.advance(12 * 3600)
    # A source's record is kept 24 h after its last failure (an account lock it failed during
    # may last that long), a made-up account's 5 minutes: about three rounds of sources.
    assert max(sizes) <= 3 * per_round + per_round  # never pruned: 37, 6 more every round

    # The throttles still hold across the pruning. An attacker locks the owner's account...
    attacker = "203.0.113.66"
    statuses = [wrong_login(fleet, attacker, "owner@example.com") for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    # ... a stream of other failures prunes what has expired, the attacker's own window passes
    # (60 s), but their source failed during the account's lock: still refused.
    fleet_clock.advance(120)
    for n in range(per_round):
        assert wrong_login(fleet, f"10.99.{n}.1", f"later-{n}@example.com") == 401
    assert wrong_login(fleet, attacker, "owner@example.com") == 429
    # The owner, from an address that has not failed, still gets in.
    owner = from_source(fleet, "198.51.100.7")
    answer = owner.post("/login", json={"email": "owner@example.com", "password": PASSWORD})
    assert answer.status_code == 200, answer.text


def test_claim_source_rows_stay_bounded_while_a_locked_network_stays_locked(
    fleet: LocalFleet, fleet_clock: FakeClock
) -> None:
    main = TestClient(fleet.app)
    (made,) = provision(main)
    body = {"payload": StickerPayload(made.serial, WRONG_CODE).encode()}
    claimers = signed_in(main, [f"claimer{n}@example.com" for n in range(3)])
    rounds, sizes = 8, []
    for r in range(rounds):  # two minutes apart: each account fails from four new networks
        for a, headers in enumerate(claimers):
            for n in range(4):
                client = from_source(fleet, f"10.{r}.{a}.{n}")
                assert client.post("/chargers/claim", json=body, headers=headers).status_code == 403
        sizes.append(rows(fleet, ClaimSource))
        fleet_clock.advance(120)
    assert max(sizes) <= 12  # a source is forgotten 60 s after its last wrong code: 96 if not

    # Ten wrong codes from ten accounts lock one network; more failures elsewhere prune the
    # table; an account that failed from that network is still refused ("from your network").
    network = from_source(fleet, "203.0.113.77")
    strangers = signed_in(main, [f"stranger{n}@example.com" for n in range(11)])
    for headers in strangers[:10]:
        assert network.post("/chargers/claim", json=body, headers=headers).status_code == 403
    fleet_clock.advance(30)
    for n in range(12):
        client = from_source(fleet, f"10.200.0.{n}")
        client.post("/chargers/claim", json=body, headers=claimers[n % 3])
    refused = network.post("/chargers/claim", json=body, headers=strangers[0])
    assert refused.status_code == 429 and "from your network" in refused.json()["detail"]


def test_the_operator_prunes_every_expired_row_at_once(
    db_url: str, fleet: LocalFleet, fleet_clock: FakeClock
) -> None:
    main = TestClient(fleet.app)
    login(main, "owner@example.com")  # two rows made on the way and never written
    for n in range(3):
        assert wrong_login(fleet, f"10.1.{n}.1", f"ghost-{n}@example.com") == 401
    before = rows(fleet, LoginThrottle)
    assert before >= 8
    fleet_clock.advance(2 * 86400)
    counts = operations.prune(fleet_settings(db_url=db_url), fleet_clock.now())
    assert counts == {"login_throttles": before, "claim_sources": 0}
    assert rows(fleet, LoginThrottle) == 0
