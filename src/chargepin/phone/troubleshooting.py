"""Connecting with the fleet service behind the app: the PIN from Charger Info, and the
troubleshooting path after a wrong PIN (PRODUCT.md: "a troubleshooting screen shows the correct
PIN; retry works").

The device first proves it is the charger, on the fleet's nonce, for the epoch it is in; the
fleet then answers the PIN of that epoch (phone/presence.py), so a hardened charger that moved
to a new epoch after a failed attempt is followed, and a device imitating the charger never
receives a passkey to learn bits from (issue 9 point 8).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chargepin.core.events import PhoneReport
from chargepin.core.pin import Pin
from chargepin.core.tickets import Action
from chargepin.phone import owner_actions
from chargepin.phone.client import ChargerLink, Phone
from chargepin.phone.errors import WrongPin
from chargepin.phone.fleet_client import FleetClient, FleetRefused
from chargepin.phone.presence import vouched_pin

BOND_HELD_BY_ANOTHER = "bond_statement_stale"
"""The fleet's code for a bond another account relayed first (fleet/members.relay_bond)."""


@dataclass(frozen=True)
class Connected:
    """A secured link, and what the user was shown on the way."""

    link: ChargerLink
    paired_now: bool
    troubleshooting: str | None  # the message shown after a wrong PIN, if there was one


async def connect(
    phone: Phone,
    fleet: FleetClient,
    serial: str,
    *,
    typed_pin: Pin | str | None = None,
    show: Callable[[str], None] = lambda _message: None,
) -> Connected:
    """Bonded: no PIN. Otherwise the PIN of the epoch the device proved (or what the user
    typed), typed only into a device that proved it is charger `serial` (phone/presence.py:
    NotThisCharger otherwise, and no passkey is sent); on a wrong PIN, show the now-correct
    PIN and retry once."""
    try:
        return await attempt(phone, fleet, serial, typed_pin=typed_pin, admitted=True)
    except WrongPin:
        shown: list[str] = []

        def note(pin: Pin) -> None:
            shown.append(
                f"That PIN did not work. The charger's PIN is now {pin}; trying again with it."
            )
            show(shown[0])

        connected = await attempt(phone, fleet, serial, admitted=True, vouched=note)
        return Connected(connected.link, connected.paired_now, shown[0] if shown else None)


async def attempt(
    phone: Phone,
    fleet: FleetClient,
    serial: str,
    *,
    typed_pin: Pin | str | None = None,
    admitted: bool = False,
    vouched: Callable[[Pin], None] = lambda _pin: None,
) -> Connected:
    """One connection to charger `serial`: the bond, else the PIN typed or, with none typed,
    the fleet's PIN of the epoch the device proved (`vouched` is told it), typed only into a
    device that proved it is the charger.

    `admitted`: on a charger that advertises a lockout, first write a member's admission
    ticket (DECISIONS.md: a member's phone is admitted past a stranger's lock). A wrong PIN is
    reported to the fleet with the charger's attested state, then raised (WrongPin): the
    caller shows the troubleshooting screen, and the retry is this again with no PIN typed.
    """
    typed = None if typed_pin is None else Pin.parse(str(typed_pin))

    async def pin_for(link: ChargerLink) -> Pin:
        pin = await vouched_pin(link, fleet, serial)
        if typed is None:
            vouched(pin)
            return pin
        return typed

    async def admission(challenge: bytes) -> bytes:
        """A stranger keeping the charger locked must not shut a member's new phone out."""
        return await fleet.ticket(serial, challenge, Action.ADMIT_PAIRING.value)

    try:
        link = await phone.connect(serial, admit=admission if admitted else None, vouched=pin_for)
    except WrongPin as failure:
        await fleet.report(serial, PhoneReport.WRONG_PIN, f"epoch now {failure.epoch}")
        if failure.locked_for > 0:
            await fleet.report(serial, "locked", f"{failure.locked_for:.0f} s")
        if failure.info is not None:
            await fleet.reconcile(failure.info)
        raise
    return await _connected(fleet, serial, link, None)


async def _connected(
    fleet: FleetClient, serial: str, link: ChargerLink, message: str | None
) -> Connected:
    """Keep the fleet in step with what the charger shows (a hardened charger rotates its PIN
    after failed attempts, and Charger Info must show the PIN that works), and relay the
    charger's statement of its bond with this phone, so revoking a user lists their phones
    (the fleet believes the charger's statement, not an address the phone names).

    On every connection, not only after pairing: a relay lost on the way, or a bond made
    before the fleet listed phones this way, is listed at the next connection. A phone whose
    bond another account relayed first (one phone, two accounts) is not this account's to
    list: that 409 is no reason to refuse the user the link they have.
    """
    await owner_actions.reconcile(link, fleet)
    try:
        await fleet.relay_bond(serial, await link.read_bond_statement())
    except FleetRefused as refused:
        if refused.code != BOND_HELD_BY_ANOTHER:
            raise
    return Connected(link, link.paired_now, message)
