"""A failed attempt is on disk before the phone is told: the crash loop's finding, pinned down.

Bumble sends an SMP Pairing Failed and only then reports the failure; a daemon that counted the
attempt in that report was killed, in `chargepin lab crash-loop`, after the phone had seen its
wrong PIN refused and before the commit, every time it was tried: the attempt was free and the
epoch (the PIN bits the attempt leaked) stayed. Here each Pairing Failed PDU the charger sends is
intercepted as it leaves, and the state file is read from a second connection at that instant:
what a charger rebooted right then would find.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from typing import Any

import pytest
from bumble import smp

from chargepin.charger.store import StateStore
from chargepin.clock import FakeClock
from chargepin.core.errors import ChargepinError
from chargepin.lab.testbed import Testbed
from chargepin.phone.errors import ChargerLocked, WrongPin
from tests.helpers.pins import wrong_pin


async def test_each_wrong_pin_is_committed_before_its_pairing_failed_is_sent(
    bed: Testbed, clock: FakeClock
) -> None:
    daemon = await bed.charger()
    attacker = await bed.phone("attacker")
    on_disk: list[tuple[int, int, int, bool]] = []
    send = daemon.device.smp_manager.send_command

    def intercept(connection: Any, command: smp.SMP_Command) -> None:
        if isinstance(command, smp.SMP_Pairing_Failed_Command):
            with StateStore.open(daemon.store.path) as disk:
                locked = disk.lockout_state.locked_until is not None
                on_disk.append(
                    (command.reason, disk.counters()["pairing_failed"], disk.epoch, locked)
                )
        send(connection, command)

    daemon.device.smp_manager.send_command = intercept  # type: ignore[method-assign]
    for _ in range(5):
        clock.advance(1)
        with pytest.raises(WrongPin):
            await attacker.connect("CP-0001", pin=wrong_pin(daemon.store.current_pin()))
    with pytest.raises(ChargerLocked):
        await attacker.connect("CP-0001", pin=str(daemon.store.current_pin()))

    wrong = smp.ErrorCode.CONFIRM_VALUE_FAILED
    assert on_disk == [
        (wrong, 1, 1, False),
        (wrong, 2, 2, False),
        (wrong, 3, 3, False),
        (wrong, 4, 4, False),
        (wrong, 5, 5, True),  # the lock is on disk before the fifth refusal goes out
        (smp.ErrorCode.REPEATED_ATTEMPTS, 5, 5, True),
    ]


async def test_a_phone_gone_as_its_last_key_arrives_leaves_a_bond_and_no_failure(
    bed: Testbed,
) -> None:
    """The charger reads the phone's last key and, in the same batch, its Disconnection
    Complete (a phone that hangs up as soon as its pair() returns). Bumble stored the keys in a
    task the disconnection cancelled before it ran: no bond, and the good pairing counted as an
    aborted attempt towards the lockout. radio.bumble_fixes reports the pairing at once."""
    daemon = await bed.charger()
    phone = await bed.phone("quick")
    guarded = daemon.device.smp_session_proxy
    cut: list[str] = []

    class GoneWithTheLastKey(guarded):  # type: ignore[misc,valid-type]
        def on_peer_key_distribution_complete(self) -> None:
            super().on_peer_key_distribution_complete()
            cut.append(str(self.connection.peer_address))
            # The Disconnection Complete handled before the loop runs anything else.
            self.connection.emit(self.connection.EVENT_DISCONNECTION, 0x13)

    daemon.device.smp_session_proxy = GoneWithTheLastKey
    with contextlib.suppress(ChargepinError, TimeoutError):  # the charger now sees no link
        await phone.connect("CP-0001", pin=str(daemon.store.current_pin()))
    assert cut, "the phone's keys never completed the pairing"

    async def bonded() -> bool:
        return bool(await daemon.store.keystore.get_all())

    for _ in range(100):
        if await bonded():
            break
        await asyncio.sleep(0.01)
    bonds = daemon.store.keystore.list_bonds()
    assert [bond.authenticated for bond in bonds] == [True]
    counters = daemon.store.counters()
    assert (counters["pairing_ok"], counters["pairing_failed"]) == (1, 0)


class SyncTrace:
    """The writes a SQLite connection commits, each with the `synchronous` level it commits at
    (SQLite refuses to change the level inside a transaction: a write's level is its commit's)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.level = int(connection.execute("PRAGMA synchronous").fetchone()[0])
        self.writes: list[tuple[int, str]] = []
        connection.set_trace_callback(self._statement)

    def _statement(self, sql: str) -> None:
        words = sql.split()
        if words[:2] == ["PRAGMA", "synchronous"]:
            self.level = int(words[-1])
        elif words[0] in ("INSERT", "UPDATE", "DELETE"):
            table = words[2] if words[0] != "UPDATE" else words[1]
            self.writes.append((self.level, f"{words[0]} {table}"))


async def test_a_success_commits_unsynced_and_a_failure_synced(
    bed: Testbed, clock: FakeClock
) -> None:
    """core.durability on the real pairing path: the bonds (charger and phone) and the
    pairing_ok event commit at NORMAL (no fsync: a power cut may cost a re-pairing); a wrong
    PIN's lockout, epoch and event at FULL, before the Pairing Failed PDU leaves."""
    daemon = await bed.charger()
    phone = await bed.phone("owner")
    charger = SyncTrace(daemon.store.keystore.connection)
    phones = SyncTrace(phone.bonds.connection)

    link = await phone.connect("CP-0001", pin=str(daemon.store.current_pin()))
    await link.disconnect()
    for _ in range(100):
        if ("INSERT", "bonds") in {tuple(w.split()[:2]) for _, w in charger.writes}:
            break
        await asyncio.sleep(0.01)
    normal, full = 1, 2
    assert set(charger.writes) == {
        (normal, "INSERT events"),
        (normal, "INSERT counters"),
        (normal, "DELETE events"),
        (normal, "INSERT ocpp_queue"),
        (normal, "INSERT bonds"),
    }
    # The phone's bond, then its cache of the charger's GATT database (core.durability).
    assert phones.writes == [(normal, "INSERT bonds"), (normal, "INSERT REPLACE")]

    charger.writes.clear()
    stranger = await bed.phone("stranger")
    clock.advance(1)
    with pytest.raises(WrongPin):
        await stranger.connect("CP-0001", pin=wrong_pin(daemon.store.current_pin()))
    assert (full, "UPDATE lockout") in charger.writes
    assert (full, "UPDATE pin_config") in charger.writes
    assert {level for level, _ in charger.writes} == {full}
    assert daemon.store.keystore.connection.execute("PRAGMA synchronous").fetchone()[0] == full
