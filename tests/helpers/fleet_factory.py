"""The factory step of the fleet tests: the factory's own process, not an HTTP call."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import httpx
from fastapi.testclient import TestClient

from chargepin.fleet import factory
from chargepin.lab.local_fleet import LocalFleet


@dataclass(frozen=True)
class Spec:
    model: str
    firmware: str
    produced: dt.date


MANDATORY = Spec("Pulsar Max", "6.11.2", dt.date(2025, 9, 1))
OPTIONAL = Spec("Volt Home", "6.8.0", dt.date(2024, 3, 15))
UNSUPPORTED = Spec("Volt Home", "6.7.16", dt.date(2024, 3, 15))


def provision(
    client: TestClient, spec: Spec = MANDATORY, count: int = 1, prefix: str = "CP"
) -> list[factory.Provisioned]:
    """Chargers made by fleet.factory on the app's own database and vault."""
    fleet = LocalFleet(client.app)  # type: ignore[arg-type]
    return fleet.provision(spec.model, spec.firmware, spec.produced, count=count, prefix=prefix)


def claim(client: TestClient, headers: dict[str, str], made: factory.Provisioned) -> httpx.Response:
    """POST the sticker of `made` as the app does after scanning it."""
    return client.post("/chargers/claim", json={"payload": made.sticker.encode()}, headers=headers)
