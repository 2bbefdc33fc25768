"""The charger daemon: a Bumble LE peripheral guarded by the PIN, and its durable state.

`ChargerDaemon` is imported on first use: provisioning and inspecting a state file (`chargepin
charger init|info|pin`) should not load the Bluetooth stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chargepin.charger.errors import StateError
from chargepin.charger.service import (
    ChargerReport,
    CsmsOptions,
    LockoutOverrides,
    Provisioned,
    charger_report,
    csms_password,
    current_pin,
    factory_identity,
    provision_charger,
    run_charger,
)
from chargepin.charger.store import ChargerIdentity, StateStore

if TYPE_CHECKING:
    from chargepin.charger.daemon import ChargerDaemon


def __getattr__(name: str) -> Any:
    if name == "ChargerDaemon":
        from chargepin.charger.daemon import ChargerDaemon

        return ChargerDaemon
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ChargerDaemon",
    "ChargerIdentity",
    "ChargerReport",
    "CsmsOptions",
    "LockoutOverrides",
    "Provisioned",
    "StateError",
    "StateStore",
    "charger_report",
    "csms_password",
    "current_pin",
    "factory_identity",
    "provision_charger",
    "run_charger",
]
