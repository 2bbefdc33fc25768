"""Who may open a charger's OCPP connection: HTTP Basic auth checked before the upgrade.

Username = the serial in the URL; password = core.csms_auth.csms_password of the charger's
secret, or the one the fleet rotated (only its hash is stored). Every refusal costs the same
work (an unknown serial is checked against a made-up secret) and says nothing of which part was
wrong: the station's operator knows its serial and password.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from chargepin.core.csms_auth import basic_credentials, csms_password, digest_matches
from chargepin.core.csms_auth import password_matches as matches
from chargepin.fleet import pins
from chargepin.fleet.csms import outbox
from chargepin.fleet.models import Charger
from chargepin.fleet.vault import Vault

_DECOY_SECRET = bytes(32)
"""Checked against when the serial is unknown, so an unknown serial costs what a known one does."""


def authenticate(
    db: Session, vault: Vault, serial: str, authorization: str | None, now: dt.datetime
) -> int | None:
    """The charger id if `authorization` proves to be charger `serial`, else None.

    A password the fleet sent whose answer never came (outbox `csms_password`, still sent) is
    accepted once, and becomes the charger's: the charger took it (the caller commits).
    """
    credentials = basic_credentials(authorization)
    username, password = credentials if credentials is not None else ("", "")
    charger = db.scalar(select(Charger).where(Charger.serial == serial))
    if charger is None:
        matches(password, csms_password(_DECOY_SECRET, serial))
        return None
    if charger.csms_password_hash is not None:
        ok = digest_matches(password, charger.csms_password_hash)
    else:
        ok = matches(password, csms_password(pins.charger_secret(vault, charger), serial))
    # The URL names the station; its credentials must name the same one (a charger with its
    # own password asking for another's socket is refused, not served as the other).
    if credentials is None or username != serial:
        return None
    if not ok:
        for command, digest in outbox.sent_password_digests(db, charger.id):
            if digest_matches(password, digest):
                outbox.adopt_password(db, command, digest, now)
                return charger.id
        return None
    return charger.id
