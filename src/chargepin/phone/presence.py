"""The app's pairing path: a PIN only for a device that proved it is the charger (issue 9.8).

A device that copies a charger's advertising and open info is the responder in passkey entry
and learns the phone's passkey bits round by round (core/presence.py). So before the app types
the fleet's PIN it asks the fleet for a nonce, has the device answer it with a MAC only the
charger's secret makes, and lets the fleet check it: the fleet answers the PIN only for a proof
that verifies. The phone holds no secret; it only carries the nonce and the proof.
"""

from __future__ import annotations

from chargepin.core.pin import Pin
from chargepin.phone.client import ChargerLink
from chargepin.phone.errors import NotThisCharger
from chargepin.phone.fleet_client import FleetClient, FleetRefused
from chargepin.radio.link_addresses import self_on_air

PRESENCE_REFUSED = "presence_invalid"
"""The fleet's code for a proof that does not verify (fleet/presence.py)."""


async def vouched_pin(link: ChargerLink, fleet: FleetClient, serial: str) -> Pin:
    """The PIN of the charger on `link`, once the device proved it is charger `serial`.

    NotThisCharger when it does not (no presence characteristic, garbage, a proof for another
    charger, nonce or link): the caller hangs up and never sends the passkey.
    """
    if link.info.serial != serial:
        raise NotThisCharger(serial, f"it says it is {link.info.serial!r}")
    nonce = await fleet.presence_nonce(serial)
    proof = await link.prove_presence(nonce)
    try:
        return await fleet.pin_for_presence(serial, nonce, proof, self_on_air(link.connection))
    except FleetRefused as error:
        if error.code == PRESENCE_REFUSED:
            raise NotThisCharger(serial, error.detail) from error
        raise
