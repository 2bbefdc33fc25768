"""The real charger daemon (its OCPP station) against the fleet's own CSMS, over a real
WebSocket on 127.0.0.1: a stranger's wrong PINs reach the owner as security events, and a
revocation with a re-key reaches the online charger without any phone (issue 10)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest

from chargepin.charger.ocpp_station import StationConfig, StationLink
from chargepin.core.csms_link import csms_endpoint
from chargepin.lab.live_server import serve
from chargepin.lab.local_fleet import PASSWORD, LocalFleet
from chargepin.lab.testbed import Testbed
from chargepin.phone import troubleshooting
from chargepin.phone.errors import ChargerLocked, PinNeeded, WrongPin
from chargepin.phone.fleet_client import FleetClient

pytestmark = pytest.mark.slow


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 15.0) -> None:
    """Until `check()` holds (bounded): the charger and the CSMS work on their own."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)
    assert await check(), what


async def account(url: str, email: str) -> FleetClient:
    client = FleetClient(url)
    await client.register(email, PASSWORD)
    await client.login(email, PASSWORD)
    return client


async def test_the_charger_reports_to_the_fleet_and_a_revocation_reaches_it(
    bed: Testbed, fleet: LocalFleet
) -> None:
    [made] = fleet.provision("Pulsar Max", "6.11.2")
    daemon = await bed.install(made.bundle)
    with serve(fleet.app) as url:
        endpoint = csms_endpoint(f"ws://127.0.0.1:{url.rsplit(':', 1)[1]}/ocpp/", made.serial)
        link = StationLink(daemon, StationConfig(endpoint))
        link.start()
        owner = await account(url, "owner@example.com")
        member = await account(url, "member@example.com")
        try:
            await asyncio.wait_for(link.connected.wait(), 15.0)
            await owner.claim(made.sticker.encode())

            # A stranger's wrong PINs reach the owner's security events by themselves.
            stranger = await bed.phone("stranger")
            for _ in range(5):
                with contextlib.suppress(WrongPin, ChargerLocked):
                    await stranger.connect(made.serial, pin="918273")

            async def failures_seen() -> bool:
                kinds = [str(e["type"]) for e in await owner.security_events(made.serial)]
                return kinds.count("MaintenanceLoginFailed") >= 1 and any(
                    "PinLockout" in kind for kind in kinds
                )

            await until(failures_seen, "the wrong PINs and the lockout reach the owner")
            [lock] = [
                e for e in await owner.security_events(made.serial) if "PinLockout" in e["type"]
            ]
            assert "locked until" in str(lock["meaning"]), lock
            assert str(lock["meaning"]).startswith("5 wrong PINs from "), lock

            # A member pairs; the owner revokes them with a re-key: the charger forgets
            # their phone and moves to the next PIN generation, no phone near it.
            code = await owner.invite(made.serial, "member@example.com")
            await member.accept(code)
            member_phone = await bed.phone("member-phone")
            daemon.clock.advance(3600)  # the stranger's lock is over
            connected = await troubleshooting.connect(member_phone, member, made.serial)
            await connected.link.disconnect()
            bonds_before = len(daemon.store.keystore.list_bonds())
            members = await owner.members(made.serial)
            member_id = next(m["user_id"] for m in members if m["role"] == "user")
            await owner.revoke(made.serial, member_id, rekey=True)

            async def applied() -> bool:
                return (
                    daemon.store.generation == 1
                    and len(daemon.store.keystore.list_bonds()) == bonds_before - 1
                )

            await until(applied, "the revocation and the re-key reach the charger over OCPP")
            with pytest.raises(PinNeeded):
                await member_phone.connect(made.serial)
            info = await owner.charger_info(made.serial)
            assert info.pin == daemon.store.current_pin()
        finally:
            await link.stop()
            for client in (owner, member):
                await client.close()
