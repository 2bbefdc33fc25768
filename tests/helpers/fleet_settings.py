"""The fleet service as the tests build it: the argon2id profile "minimum" for passwords.

The suite makes about 1,800 password hashes and verifications; with the service's default
profile (64 MiB, 3 passes, 4 lanes) each costs about 0.18 s of CPU, with "minimum" (19 MiB,
2 passes, 1 lane, still argon2id) a fraction of it (docs/PERFORMANCE.md, "The suite's time").
What the tests prove of accounts does not depend on the cost; the one test of the default
profile itself builds its fleet with it (tests/fleet/test_password_hashing.py).
"""

from __future__ import annotations

from typing import Any

from chargepin.clock import Clock
from chargepin.fleet.security import PasswordHashing
from chargepin.fleet.settings import FleetSettings
from chargepin.fleet.vault import Vault
from chargepin.lab.local_fleet import LocalFleet

TEST_HASHING: PasswordHashing = "minimum"
SERVE_HASHING = ("--password-hashing", TEST_HASHING)
"""What the tests' `fleet serve` and `fleet gateway` processes are given."""


def fleet_settings(**values: Any) -> FleetSettings:
    """FleetSettings with `values` and the tests' password hashing."""
    return FleetSettings(**{"password_hashing": TEST_HASHING, **values})


def start_fleet(db_url: str, clock: Clock, vault: Vault | None = None) -> LocalFleet:
    """`LocalFleet.start` with the tests' password hashing."""
    return LocalFleet.start(db_url, clock, vault, password_hashing=TEST_HASHING)
