"""The app's flows that need the fleet service, one coroutine each (behind `chargepin phone`).

Login is kept in a login file (fleet URL and bearer token, mode 0600). Each Bluetooth flow
opens the phone like phone/flows.py does, connects through the troubleshooting path (the PIN of
the epoch the charger advertises; one retry with the now-correct PIN after a wrong one) and, for
owner actions, applies a fleet ticket and hands the receipt back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chargepin.core.protocol import AdminResult
from chargepin.core.tickets import Action
from chargepin.phone import owner_actions, troubleshooting
from chargepin.phone.fleet_client import ChargerInfo, FleetClient, Login
from chargepin.phone.flows import PhoneOptions, open_phone


@asynccontextmanager
async def fleet_from(login_path: Path) -> AsyncIterator[FleetClient]:
    login = Login.load(login_path)
    client = FleetClient(login.fleet_url, login.token)
    try:
        yield client
    finally:
        await client.close()


async def login(login_path: Path, fleet_url: str, email: str, password: str, register: bool) -> str:
    """Log in (registering first if asked) and remember the login in the login file."""
    async with FleetClient(fleet_url) as client:
        if register:
            await client.register(email, password)
        token = await client.login(email, password)
    Login(fleet_url, token).save(login_path)
    return email


async def logout(login_path: Path, everywhere: bool) -> int:
    """End this login (or, `everywhere`, every login of the account) and forget it here.

    The login file goes only once the fleet has ended the token; how many logins ended.
    """
    async with fleet_from(login_path) as fleet:
        if everywhere:
            ended = await fleet.end_all_sessions()
        else:
            await fleet.logout()
            ended = 1
    login_path.unlink()
    return ended


async def commission(login_path: Path, sticker_payload: str) -> ChargerInfo:
    """Scan the sticker: the first valid claim makes us the owner and shows the PIN."""
    async with fleet_from(login_path) as fleet:
        return await fleet.claim(sticker_payload)


async def charger_info(login_path: Path, serial: str) -> ChargerInfo:
    async with fleet_from(login_path) as fleet:
        return await fleet.charger_info(serial)


@dataclass(frozen=True)
class ConnectOutcome:
    serial: str
    paired_now: bool
    troubleshooting: str | None


async def connect(
    login_path: Path,
    options: PhoneOptions,
    serial: str,
    typed_pin: str | None,
    show: Callable[[str], None],
) -> ConnectOutcome:
    """Bonded: no PIN; otherwise the PIN from the fleet (or typed), with one guided retry."""
    async with fleet_from(login_path) as fleet, open_phone(options) as phone:
        connected = await troubleshooting.connect(
            phone, fleet, serial, typed_pin=typed_pin, show=show
        )
        await connected.link.disconnect()
        return ConnectOutcome(serial, connected.paired_now, connected.troubleshooting)


async def owner_action(
    login_path: Path,
    options: PhoneOptions,
    serial: str,
    action: Action,
    args: dict[str, str] | None = None,
) -> AdminResult:
    """Connect, reconcile what the charger shows, apply one fleet ticket, commit its receipt."""
    async with fleet_from(login_path) as fleet, open_phone(options) as phone:
        connected = await troubleshooting.connect(phone, fleet, serial)
        try:
            return await owner_actions.apply(connected.link, fleet, action, args)
        finally:
            await connected.link.disconnect()


async def revoke(
    login_path: Path, options: PhoneOptions | None, serial: str, user_id: int, rekey: bool
) -> owner_actions.Revocation:
    """Revoke a member at the fleet; near the charger (`options`), remove their phones from it
    and re-key it when the fleet offers that (`owner_actions.revoke_at_charger`)."""
    async with fleet_from(login_path) as fleet:
        answer = await fleet.revoke(serial, user_id)
        if options is None:
            return owner_actions.Revocation.at_fleet_only(answer)
        async with open_phone(options) as phone:
            connected = await troubleshooting.connect(phone, fleet, serial)
            try:
                return await owner_actions.revoke_at_charger(connected.link, fleet, answer, rekey)
            finally:
                await connected.link.disconnect()


async def members(login_path: Path, serial: str) -> list[dict[str, Any]]:
    async with fleet_from(login_path) as fleet:
        return await fleet.members(serial)


async def invite(login_path: Path, serial: str, email: str) -> str:
    async with fleet_from(login_path) as fleet:
        return await fleet.invite(serial, email)


async def invitations(login_path: Path, serial: str) -> list[dict[str, Any]]:
    async with fleet_from(login_path) as fleet:
        return await fleet.invitations(serial)


async def audit(login_path: Path, serial: str) -> list[dict[str, Any]]:
    """Every PIN reveal of the charger, newest first, fetched page by page (owner only)."""
    async with fleet_from(login_path) as fleet:
        return await fleet.audit(serial)


async def events(login_path: Path, serial: str) -> list[dict[str, Any]]:
    """Every security event phones reported, newest first, page by page (owner only)."""
    async with fleet_from(login_path) as fleet:
        return await fleet.events(serial)


async def withdraw(login_path: Path, serial: str, invitation_id: int) -> dict[str, Any]:
    async with fleet_from(login_path) as fleet:
        return await fleet.withdraw(serial, invitation_id)


async def accept(login_path: Path, code: str) -> dict[str, Any]:
    async with fleet_from(login_path) as fleet:
        return await fleet.accept(code)
