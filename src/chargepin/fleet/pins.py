"""The PINs the fleet knows for a charger: derived from the vaulted secret, or a custom one."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from chargepin.core.epochs import epoch_pin, pin_fingerprint
from chargepin.core.pin import Pin
from chargepin.core.policy import FirmwareVersion
from chargepin.fleet.vault import Vault


class ChargerFacts(Protocol):
    """What the PIN rules read of a charger: its ORM row, or a Core row of the same columns
    (the PIN reveal's hot path reads those without the ORM, docs/PERFORMANCE.md)."""

    @property
    def id(self) -> int: ...
    @property
    def serial(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def firmware(self) -> FirmwareVersion: ...
    @property
    def produced(self) -> dt.date: ...
    @property
    def epoch(self) -> int: ...
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


def pin_of_epoch(vault: Vault, charger: ChargerFacts, epoch: int) -> Pin:
    """The PIN the charger uses in `epoch` (its secret never leaves the vault)."""
    return epoch_pin(charger_secret(vault, charger), charger.serial, epoch)


def active_pin(vault: Vault, charger: ChargerFacts) -> Pin:
    """The committed PIN: the custom one if set, else the PIN of the committed epoch."""
    if charger.custom_pin_ct is not None:
        digits = vault.open(charger.custom_pin_ct, custom_pin_context(charger.serial))
        return Pin(digits.decode())
    return pin_of_epoch(vault, charger, charger.epoch)


def fingerprint(vault: Vault, charger: ChargerFacts, pin: Pin) -> bytes:
    """The keyed fingerprint the charger publishes for `pin` (tells which PIN is live)."""
    return pin_fingerprint(charger_secret(vault, charger), charger.serial, pin)
