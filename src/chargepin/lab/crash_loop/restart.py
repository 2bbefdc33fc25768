"""After a kill: the daemon restarted on the same file must serve again.

The open info says the file's epoch; a lock in force before the kill still refuses the right
PIN; a phone an owner ticket revoked (its bond gone from the file) cannot reconnect with the bond
it still holds; the owner and the newest guests, bonded, reconnect without PIN and read the
status. A bond
the charger never proved may be lost, and after a power cut one the oracle allowed it to lose:
the phone's encryption fails, it forgets the charger and pairs again with the PIN, which must
work (unless a lock is on): a lost success costs a pairing, never the phone's access.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from chargepin.charger.service import current_pin
from chargepin.lab.crash_loop.workload import STEP_TIMEOUT, Chain, Phones, describe, link_dropped
from chargepin.lab.security_state import SecurityState
from chargepin.phone.client import ChargerLink, Phone
from chargepin.phone.errors import ChargerLocked
from chargepin.phone.identity import load_identity
from chargepin.radio.keystore import open_keystore_file

LOCK_MARGIN = 3.0
"""Seconds a lock must still have to run for the restarted daemon to be asked to refuse."""


async def serve_after_restart(
    phones: Phones, chain: Chain, after: SecurityState, violations: list[str]
) -> dict[str, Any]:
    """Info readable, a lock refusing, bonded phones reconnecting; violations appended."""
    result: dict[str, Any] = {}
    serving = time.monotonic()
    reconnects: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(STEP_TIMEOUT):
            async with phones.open(chain.attacker_bonds, "attacker") as attacker:
                info = await attacker.read_info(chain.serial)
                if info.epoch != after.epoch:
                    violations.append(f"info says epoch {info.epoch}, the file {after.epoch}")
                lock = await check_lock(attacker, chain, after, info.locked)
        result["lock_after_restart"] = lock
        if lock not in ("refused", "not locked"):
            violations.append(f"a lock in force before the kill: {lock}")
        revoked = [await stays_out(phones, chain, bonds, violations) for bonds in chain.revoked]
        result["revoked_refused"] = revoked
        chain.revoked = []
        for bonds in await bonded_phone_files(chain):
            reconnects.append(await reconnect(phones, chain, bonds, violations))
    except (Exception, asyncio.CancelledError) as error:  # the restarted charger did not serve
        if not link_dropped(error):
            raise
        violations.append(f"the restarted daemon did not serve: {describe(error)}")
    chain.confirmed = chain.confirmed_after(phones.witness)
    result["reconnects"] = reconnects
    result["serve_s"] = round(time.monotonic() - serving, 3)
    return result


async def check_lock(attacker: Phone, chain: Chain, after: SecurityState, advertised: bool) -> str:
    """A lock with LOCK_MARGIN left to run must be on the info and refuse the right PIN."""
    until = after.lockout.locked_until
    if until is None or until - time.time() < LOCK_MARGIN:
        return "not locked"
    if not advertised:
        return "missing from the info characteristic"
    try:
        link = await attacker.connect(chain.serial, current_pin(chain.state))
    except ChargerLocked:
        return "refused"
    await link.disconnect()
    await attacker.forget(chain.address)
    return "served a pairing"


async def bonded_status(phone: Phone, chain: Chain) -> ChargerLink | BaseException:
    """The phone reconnects with its bond, without PIN, and reads the status (protected): the
    link, or the error with which the charger dropped it (anything else is raised)."""
    try:
        async with asyncio.timeout(STEP_TIMEOUT):
            link = await phone.connect(chain.serial)
            await link.status()
    except (Exception, asyncio.CancelledError) as error:
        if not link_dropped(error):
            raise
        return error
    return link


async def stays_out(phones: Phones, chain: Chain, bonds: Path, violations: list[str]) -> bool:
    """A revoked phone tries its old bond: the charger must not serve it a protected read.
    Then it forgets the charger, as the app does when the encryption fails."""
    async with phones.open(bonds, bonds.stem) as phone:
        address = load_identity(phone.bonds).address
        link = await bonded_status(phone, chain)
        if isinstance(link, BaseException):
            await phone.forget(chain.address)
            return True
        violations.append(f"revoked phone {address} reconnected with its old bond and was served")
        await link.disconnect()
        await phone.forget(chain.address)
        return False


async def bonded_phone_files(chain: Chain) -> list[Path]:
    """The owner and the two newest guests of this charger, if their phone holds a bond."""
    newest = [chain.directory / f"guest{n}-bonds.db" for n in range(chain.guests, 0, -1)]
    found = []
    for path in [chain.owner_bonds, *newest[:2]]:
        if not path.exists():
            continue
        bonds = open_keystore_file(path)
        try:
            if await bonds.get(chain.address) is not None:
                found.append(path)
        finally:
            bonds.close()
    return found


async def reconnect(
    phones: Phones, chain: Chain, bonds: Path, violations: list[str]
) -> dict[str, Any]:
    """A bonded phone reconnects without PIN and reads the status (protected)."""
    async with phones.open(bonds, bonds.stem) as phone:
        address = load_identity(phone.bonds).address
        confirmed = address in chain.confirmed
        link = await bonded_status(phone, chain)
        if isinstance(link, BaseException):
            error = link
            await phone.forget(chain.address)  # what the app does: pair again
            chain.confirmed.pop(address, None)
            if confirmed:
                violations.append(f"bonded phone {address} could not reconnect: {error}")
                return {"phone": address, "confirmed": True, "ok": False, "error": describe(error)}
            return {
                "phone": address,
                "confirmed": False,
                "ok": False,
                "error": describe(error),
                "paired_again": await pair_again(phones, chain, phone, violations),
            }
        await phones.confirm(phone)
        await link.disconnect()
        return {"phone": address, "confirmed": confirmed, "ok": True}


async def pair_again(phones: Phones, chain: Chain, phone: Phone, violations: list[str]) -> str:
    """A phone whose bond the charger lost pairs again with the PIN: "ok", or "locked"."""
    try:
        async with asyncio.timeout(STEP_TIMEOUT):
            link = await phone.connect(chain.serial, current_pin(chain.state))
            await link.status()
    except ChargerLocked:
        return "locked"
    except (Exception, asyncio.CancelledError) as error:
        if not link_dropped(error):
            raise
        violations.append(f"a phone whose bond was lost could not pair again: {describe(error)}")
        return "failed"
    await phones.confirm(phone, paired=True)
    await link.disconnect()
    return "ok"
