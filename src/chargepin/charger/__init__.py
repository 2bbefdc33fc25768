"""The charger daemon: a Bumble LE peripheral guarded by the PIN, and its durable state."""

from __future__ import annotations

from chargepin.charger.daemon import ChargerDaemon
from chargepin.charger.errors import StateError
from chargepin.charger.service import provision_charger, run_charger
from chargepin.charger.store import ChargerIdentity, StateStore

__all__ = [
    "ChargerDaemon",
    "ChargerIdentity",
    "StateError",
    "StateStore",
    "provision_charger",
    "run_charger",
]
