"""The phone's user flows, one coroutine each: scan, pair, read info, status, control, forget.

Each flow opens the phone's radio and bond store, does one thing with one charger, and always
hangs up and powers the radio off on the way out, so a command line, an end-of-line test station
or a script gets the same behaviour as `chargepin phone ...`. Failures are the client's
`PhoneError` subclasses, untouched: their `exit_code` and message are what the user sees.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from chargepin.core.pin import Pin
from chargepin.core.protocol import ChargerStatus, OpenInfo
from chargepin.phone.client import ChargerLink, FoundCharger, Phone
from chargepin.phone.identity import load_identity
from chargepin.radio.keystore import open_keystore_file
from chargepin.radio.transport import open_hci

T = TypeVar("T")

_ADDRESS = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}", re.ASCII)


@dataclass(frozen=True)
class PhoneOptions:
    """Where the phone's radio and bonds are, and how long to look for a charger."""

    transport: str
    bonds: Path
    find_timeout: float = 5.0
    pairing_timeout: float = 30.0


@dataclass(frozen=True)
class PairOutcome:
    """How a `pair` ended: a new bond (with or without the PIN) or a reconnection with the bond."""

    serial: str
    address: str
    paired_now: bool
    pin_used: bool


@dataclass(frozen=True)
class ForgetOutcome:
    """Which charger's bond was deleted, and whether there was one."""

    address: str
    existed: bool


def is_address(target: str) -> bool:
    """Whether `target` is a Bluetooth address (six hex octets) rather than a serial."""
    return _ADDRESS.fullmatch(target.strip()) is not None


def parse_pin(pin: str | None) -> Pin | None:
    """The typed PIN, checked before the radio is opened so a typo costs no attempt."""
    return None if pin is None else Pin.parse(pin)


@asynccontextmanager
async def open_phone(options: PhoneOptions) -> AsyncIterator[Phone]:
    """A powered-on phone on `options.transport` with its bonds; powered off and closed on exit."""
    bonds = open_keystore_file(options.bonds)
    try:
        async with open_hci(options.transport) as endpoints:
            phone = Phone(
                endpoints,
                bonds,
                identity=load_identity(bonds),
                pairing_timeout=options.pairing_timeout,
                scan_timeout=options.find_timeout,
                privacy=True,  # like a real phone: a fresh resolvable private address per run
            )
            await phone.start()
            try:
                yield phone
            finally:
                await phone.stop()
    finally:
        bonds.close()


@asynccontextmanager
async def open_link(phone: Phone, target: str, pin: Pin | None) -> AsyncIterator[ChargerLink]:
    """A secured link to `target` (bond, else the PIN); disconnected on exit whatever happened."""
    link = await phone.connect(target, pin=pin)
    try:
        yield link
    finally:
        await link.disconnect()


async def _with_link(
    options: PhoneOptions,
    target: str,
    pin: str | None,
    use: Callable[[ChargerLink], Awaitable[T]],
) -> T:
    """Open the phone, secure a link to `target`, run `use` on it, then tear everything down."""
    typed = parse_pin(pin)
    async with open_phone(options) as phone, open_link(phone, target, typed) as link:
        return await use(link)


async def scan(options: PhoneOptions, seconds: float) -> list[FoundCharger]:
    """The chargers heard advertising within `seconds`, sorted by serial."""
    async with open_phone(options) as phone:
        found = await phone.scan(seconds)
    return sorted(found, key=lambda charger: (charger.serial, charger.address))


async def pair(options: PhoneOptions, target: str, pin: str | None) -> PairOutcome:
    """Pair with `target` using `pin`, or reconnect with the bond if this phone has one.

    A charger that already knows us never sees the PIN again (PRODUCT.md: a bonded phone
    reconnects without it), so `pin` is only used when there is no bond.
    """

    async def outcome(link: ChargerLink) -> PairOutcome:
        return PairOutcome(
            serial=link.info.serial,
            address=link.address,
            paired_now=link.paired_now,
            pin_used=link.paired_now and link.info.pin_enabled,
        )

    return await _with_link(options, target, pin, outcome)


async def read_info(options: PhoneOptions, target: str) -> OpenInfo:
    """The charger's open info (identity, PIN class and state, epoch, lockout), without pairing."""
    async with open_phone(options) as phone:
        return await phone.read_info(target)


async def status(options: PhoneOptions, target: str, pin: str | None = None) -> ChargerStatus:
    """The protected charging status (needs the bond, or the PIN to make one)."""
    return await _with_link(options, target, pin, lambda link: link.status())


async def start_charging(
    options: PhoneOptions, target: str, pin: str | None = None
) -> ChargerStatus:
    """Start a charging session; the status after the command."""
    return await _with_link(options, target, pin, lambda link: link.start_charging())


async def stop_charging(
    options: PhoneOptions, target: str, pin: str | None = None
) -> ChargerStatus:
    """Stop the charging session; the status after the command."""
    return await _with_link(options, target, pin, lambda link: link.stop_charging())


async def set_current_limit(
    options: PhoneOptions, target: str, amps: int, pin: str | None = None
) -> ChargerStatus:
    """Set the charging current limit in amperes; the status after the command."""
    return await _with_link(options, target, pin, lambda link: link.set_current_limit(amps))


async def forget(options: PhoneOptions, target: str) -> ForgetOutcome:
    """Delete this phone's bond with `target` (the phone's "Forget this device").

    Bonds are keyed by the charger's address; a serial is resolved to it by hearing the charger
    advertise. The charger keeps its side of the bond: the next `pair` needs the PIN again and
    replaces it (notes/bumble.md, Bonds).
    """
    async with open_phone(options) as phone:
        address = (
            target.strip().upper() if is_address(target) else (await phone.find(target)).address
        )
        existed = await phone.forget(address)
    return ForgetOutcome(address=address, existed=existed)
