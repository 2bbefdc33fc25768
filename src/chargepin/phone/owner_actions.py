"""Owner actions from the app: a fleet ticket bound to the charger's challenge, applied over
Bluetooth, the charger's receipt handed back to the fleet (DESIGN.md "Tickets", "Receipts").

If the link drops after the charger applied a change but before the receipt reached the fleet,
`reconcile` (on the next connection) lets the fleet learn which PIN is live from the charger's
open info: nothing is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chargepin.core.protocol import AdminResult
from chargepin.core.tickets import Action
from chargepin.phone.client import ChargerLink
from chargepin.phone.fleet_client import FleetClient


async def apply(
    link: ChargerLink,
    fleet: FleetClient,
    action: Action,
    args: dict[str, str] | None = None,
) -> AdminResult:
    """Ask the fleet for a ticket, have the charger apply it, commit the receipt."""
    serial = link.info.serial
    challenge = await link.read_challenge()
    ticket = await fleet.ticket(serial, challenge, action.value, args)
    result = await link.submit_ticket(ticket)
    if result.receipt:
        await fleet.receipt(serial, result.receipt)
    return result


async def reconcile(link: ChargerLink, fleet: FleetClient) -> dict[str, Any]:
    """Tell the fleet what the charger publishes now (epoch, PIN on/off, PIN fingerprint)."""
    return await fleet.reconcile(await link.read_info())


@dataclass(frozen=True)
class Revocation:
    """What revoking a member did: at the fleet, and at the charger when the phone was near."""

    email: str
    phones_removed: tuple[str, ...]
    """The member's phones the charger forgot (remove_phone tickets)."""
    phones_not_paired: tuple[str, ...]
    """The member's phones the charger did not know (nothing to remove)."""
    rekey_offered: bool
    rekeyed: bool
    at_charger: bool
    """False when no radio was used: the charger steps are still to do, near it."""

    @classmethod
    def at_fleet_only(cls, answer: dict[str, Any]) -> Revocation:
        return cls(str(answer["email"]), (), (), bool(answer["rekey_offered"]), False, False)


def _same_phone(a: str, b: str) -> bool:
    return a.split("/")[0].upper() == b.split("/")[0].upper()


async def revoke_at_charger(
    link: ChargerLink, fleet: FleetClient, answer: dict[str, Any], rekey: bool
) -> Revocation:
    """The charger's part of a revocation the fleet answered (`FleetClient.revoke`).

    PRODUCT.md: removing an invited user removes their phones. The re-key (when the fleet
    offers it: the member saw PINs of the charger's sequence) moves the charger to a PIN
    sequence nobody has seen; the remaining members' Charger Info shows the new PIN once the
    receipt is in. Running it again is safe (issue 9): removed phones are no longer paired.
    """
    paired = (await apply(link, fleet, Action.LIST_PHONES)).phones
    removed: list[str] = []
    absent: list[str] = []
    for address in answer["phones_to_remove"]:
        if not any(_same_phone(address, known) for known in paired):
            absent.append(address)
            continue
        await apply(link, fleet, Action.REMOVE_PHONE, {"address": address})
        removed.append(address)
    offered = bool(answer["rekey_offered"])
    rekeyed = rekey and offered
    if rekeyed:
        await apply(link, fleet, Action.REKEY)
    return Revocation(str(answer["email"]), tuple(removed), tuple(absent), offered, rekeyed, True)
