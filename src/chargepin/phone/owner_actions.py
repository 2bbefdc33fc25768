"""Owner actions from the app: a fleet ticket bound to the charger's challenge, applied over
Bluetooth, the charger's receipt handed back to the fleet (DESIGN.md "Tickets", "Receipts").

If the link drops after the charger applied a change but before the receipt reached the fleet,
`reconcile` (on the next connection) lets the fleet learn which PIN is live from the charger's
open info: nothing is lost.
"""

from __future__ import annotations

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
