"""Chargers with an owner, written straight to the fleet database (tests only).

Commissioning through the sticker is another endpoint's job; these tests need an owner without
it. Everything after this goes through HTTP.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass

from fastapi.testclient import TestClient
from sqlalchemy import select

from chargepin.core import bond_statement
from chargepin.core.attestation import AttestedState, attest
from chargepin.core.bond_statement import BondedPhone
from chargepin.core.epochs import epoch_pin, pin_fingerprint
from chargepin.core.keys import new_secret
from chargepin.core.pin import Pin
from chargepin.core.policy import FirmwareVersion
from chargepin.fleet import pins
from chargepin.fleet.models import Charger, Membership

_serials = itertools.count(1)


@dataclass(frozen=True)
class ChargerModel:
    model: str
    firmware: str
    produced: dt.date
    pin_enabled: bool


MANDATORY = ChargerModel("Pulsar Max", "6.11.2", dt.date(2025, 9, 1), pin_enabled=True)
OPTIONAL = ChargerModel("Pulsar Plus", "6.8.0", dt.date(2025, 9, 1), pin_enabled=False)


@dataclass(frozen=True)
class ChargerRecord:
    """A charger in the fleet database and what only the charger itself would know."""

    serial: str
    secret: bytes
    owner_id: int

    def pin(self, epoch: int) -> Pin:
        return epoch_pin(self.secret, self.serial, epoch)

    def fingerprint(self, pin: Pin) -> bytes:
        return pin_fingerprint(self.secret, self.serial, pin)

    def open_info(self, epoch: int, pin: Pin, pin_enabled: bool = True) -> dict[str, object]:
        """The reconcile body a phone relays from this charger's open info, attested."""
        state = AttestedState(epoch, pin_enabled, self.fingerprint(pin))
        return {
            "epoch": epoch,
            "fingerprint": state.fingerprint.hex(),
            "pin_enabled": pin_enabled,
            "attestation": attest(self.secret, self.serial, state).hex(),
        }

    def bond_statement(self, address: str, sequence: int, ltk: bytes) -> dict[str, str]:
        """The body a phone relays from this charger's bond characteristic after pairing."""
        bond = bond_statement.bond_id(self.secret, self.serial, ltk)
        statement = bond_statement.make(
            self.secret, self.serial, BondedPhone(address, sequence, bond)
        )
        return {"statement": statement.hex()}


def add_charger(
    client: TestClient, owner_headers: dict[str, str], kind: ChargerModel = MANDATORY
) -> ChargerRecord:
    """A claimed charger of `kind` owned by the account behind `owner_headers`."""
    owner_id = client.get("/me", headers=owner_headers).json()["id"]
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    serial = f"CPT{next(_serials):06d}"
    secret = new_secret()
    now = dt.datetime.fromtimestamp(fleet.clock.now(), dt.UTC)
    with fleet.sessions() as db, db.begin():
        charger = Charger(
            serial=serial,
            model=kind.model,
            firmware=FirmwareVersion.parse(kind.firmware),
            produced=kind.produced,
            secret_ct=fleet.vault.seal(secret, pins.secret_context(serial)),
            claim_code_hash=None,
            claimed_at=now,
            claim_lockout={},
            pin_enabled=kind.pin_enabled,
            epoch=0,
            created_at=now,
        )
        db.add(charger)
        db.flush()
        db.add(Membership(charger_id=charger.id, user_id=owner_id, role="owner", created_at=now))
    return ChargerRecord(serial, secret, owner_id)


def charger_row(client: TestClient, serial: str) -> Charger:
    """The charger's row as the database holds it now (to check nothing changed)."""
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    with fleet.sessions() as db:
        row = db.scalar(select(Charger).where(Charger.serial == serial))
        assert row is not None
        return row
