"""The phone's Bluetooth side: pair with the PIN, reconnect with the bond, act on errors."""

from __future__ import annotations

from chargepin.phone.client import ChargerLink, FoundCharger, Phone
from chargepin.phone.errors import (
    AccessDenied,
    AdminRefused,
    ChargerBusy,
    ChargerLocked,
    ChargerNotFound,
    ChargerTimeout,
    CommandRefused,
    LinkLost,
    PairingRefused,
    PhoneError,
    PinNeeded,
    WrongPin,
)
from chargepin.phone.identity import PhoneIdentity, load_identity

__all__ = [
    "AccessDenied",
    "AdminRefused",
    "ChargerBusy",
    "ChargerLink",
    "ChargerLocked",
    "ChargerNotFound",
    "ChargerTimeout",
    "CommandRefused",
    "FoundCharger",
    "LinkLost",
    "PairingRefused",
    "Phone",
    "PhoneError",
    "PhoneIdentity",
    "PinNeeded",
    "WrongPin",
    "load_identity",
]
