"""Connecting with the fleet service behind the app: the PIN from Charger Info, and the
troubleshooting path after a wrong PIN (PRODUCT.md: "a troubleshooting screen shows the correct
PIN; retry works").

The charger advertises its PIN epoch; the app asks the fleet for the PIN of that epoch, so a
hardened charger that moved to a new epoch after a failed attempt is followed, never guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chargepin.core.events import PhoneReport
from chargepin.core.pin import Pin
from chargepin.core.protocol import OpenInfo
from chargepin.core.tickets import Action
from chargepin.phone import owner_actions
from chargepin.phone.client import ChargerLink, Phone
from chargepin.phone.errors import WrongPin
from chargepin.phone.fleet_client import FleetClient, FleetRefused

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
    """Bonded: no PIN. Otherwise the PIN of the advertised epoch (or what the user typed);
    on a wrong PIN, show the now-correct PIN and retry once."""

    async def from_fleet(info: OpenInfo) -> Pin:
        await fleet.reconcile(info)  # the fleet reveals only the epoch the charger attested
        return await fleet.pin_of_epoch(serial, info.epoch)

    async def admission(challenge: bytes) -> bytes:
        """A stranger keeping the charger locked must not shut a member's new phone out."""
        return await fleet.ticket(serial, challenge, Action.ADMIT_PAIRING.value)

    try:
        link = await phone.connect(
            serial,
            pin=typed_pin if typed_pin is not None else from_fleet,
            admit=admission,
        )
    except WrongPin as failure:
        await fleet.report(serial, PhoneReport.WRONG_PIN, f"epoch now {failure.epoch}")
        if failure.locked_for > 0:  # the retry below is admitted past the lock
            await fleet.report(serial, "locked", f"{failure.locked_for:.0f} s")
        if failure.info is not None:
            await fleet.reconcile(failure.info)
        pin = await fleet.pin_of_epoch(serial, failure.epoch)
        message = f"That PIN did not work. The charger's PIN is now {pin}; trying again with it."
        show(message)
        link = await phone.connect(serial, pin=pin, admit=admission)
        return await _connected(fleet, serial, link, message)
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
