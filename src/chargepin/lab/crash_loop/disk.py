"""What a state file holds after a kill, read with the daemon down, for the oracle."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from chargepin.charger.errors import StateError
from chargepin.lab.crash_loop.oracle import ConfirmedBond, OnDisk, StateCheck, Witness, judge
from chargepin.lab.security_state import SecurityState

BONDS_TABLE = "bonds"
"""The table StateStore gives Bumble's key store (StateStore.keystore)."""


def read_disk(path: Path) -> OnDisk:
    """`PRAGMA integrity_check` and every bond row, read raw (a row the store would refuse to
    open with is still there to be named), then the security state as the store reads it."""
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True)
        ) as db:
            integrity = tuple(str(row[0]) for row in db.execute("PRAGMA integrity_check"))
            rows = {
                str(address): str(text)
                for address, text in db.execute(f"SELECT address, keys FROM {BONDS_TABLE}")
            }
    except sqlite3.DatabaseError as error:
        unreadable = str(error)
        integrity, rows = (), {}
    else:
        unreadable = ""
    try:
        state = SecurityState.read(path)
    except StateError as error:
        return OnDisk(None, str(error), unreadable, integrity, rows)
    return OnDisk(state, "", unreadable, integrity, rows)


def check_state(
    path: Path,
    before: SecurityState,
    witness: Witness,
    confirmed: Mapping[str, ConfirmedBond],
    *,
    power_cut: bool = False,
) -> StateCheck:
    """Read the state file at `path` after a kill (or a power cut) and judge it (oracle.judge)."""
    return judge(before, read_disk(path), witness, confirmed, power_cut=power_cut)
