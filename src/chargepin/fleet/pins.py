"""The PINs the fleet knows for a charger: derived from the vaulted secret, or a custom one."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from chargepin.core.epochs import pin_fingerprint
from chargepin.core.pin import Pin
from chargepin.core.pin_state import PinState
from chargepin.core.policy import FirmwareVersion
from chargepin.fleet.vault import Vault


class Labelled(Protocol):
    """What Charger Info without the PIN reads of a charger: its ORM row, or a Core row of
    these columns (My chargers lists hundreds without building an ORM object for each)."""

    @property
    def serial(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def firmware(self) -> FirmwareVersion: ...
    @property
    def produced(self) -> dt.date: ...
    @property
    def pin_enabled(self) -> bool: ...
    @property
    def epoch(self) -> int: ...


class ChargerFacts(Labelled, Protocol):
    """What the PIN rules read of a charger: its ORM row, or a Core row of the same columns
    (the PIN reveal's hot path reads those without the ORM, docs/PERFORMANCE.md)."""

    @property
    def id(self) -> int: ...
    @property
    def generation(self) -> int: ...
    @property
    def secret_ct(self) -> bytes: ...
    @property
    def custom_pin_ct(self) -> bytes | None: ...


def secret_context(serial: str) -> str:
    return f"charger-secret:{serial}"


def custom_pin_context(serial: str) -> str:
    return f"custom-pin:{serial}"


def charger_secret(vault: Vault, charger: ChargerFacts) -> bytes:
    return vault.open(charger.secret_ct, secret_context(charger.serial))


def custom_pin(vault: Vault, charger: ChargerFacts, ct: bytes | None) -> Pin | None:
    """A custom PIN sealed for this charger (committed, or in a pending change), opened."""
    if ct is None:
        return None
    return Pin(vault.open(ct, custom_pin_context(charger.serial)).decode())


def committed_state(vault: Vault, charger: ChargerFacts) -> PinState:
    """The PIN state the fleet has committed for this charger (core.pin_state)."""
    return PinState(
        charger.pin_enabled,
        charger.epoch,
        custom_pin(vault, charger, charger.custom_pin_ct),
        charger.generation,
    )


def active_pin(vault: Vault, charger: ChargerFacts) -> Pin:
    """The committed PIN: the committed state's live PIN (core.pin_state decides which)."""
    return committed_state(vault, charger).live_pin(charger_secret(vault, charger), charger.serial)


def fingerprint(vault: Vault, charger: ChargerFacts, pin: Pin) -> bytes:
    """The keyed fingerprint the charger publishes for `pin` (tells which PIN is live)."""
    return pin_fingerprint(charger_secret(vault, charger), charger.serial, pin)
