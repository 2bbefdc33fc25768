"""`chargepin lab crash-loop`: a short run end to end, and the checker failing when it must.

The run kills real daemon processes; the checker tests feed `check_state` state files that a
kill could not produce with our store (a torn bond row, a file restored from an older copy,
failures the phones saw but the file lacks) and expect each to be reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import shutil
from pathlib import Path

import pytest
from bumble.keys import PairingKeys
from typer.testing import CliRunner

from chargepin.charger.service import provision_charger
from chargepin.charger.store import StateStore
from chargepin.cli import app
from chargepin.core.lockout import record_failure
from chargepin.core.policy import FirmwareVersion
from chargepin.core.profiles import lockout_config
from chargepin.lab.crash_loop import (
    ConfirmedBond,
    CrashLoopError,
    Witness,
    bond_problems,
    check_state,
    stop_workload,
)
from chargepin.lab.security_state import SecurityState

PHONE = "F1:22:33:44:55:66"
LTK = bytes(range(16))
IRK = bytes(range(16, 32))
NOW = 1_700_000_000.0


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "charger.db"
    provision_charger(
        path,
        serial="CP-CHECK-1",
        model="Pulsar Max",
        firmware=FirmwareVersion.parse("6.11.2"),
        produced=datetime.date(2025, 9, 1),
    )
    return path


def bond_keys(ltk: bytes = LTK, irk: bytes = IRK) -> PairingKeys:
    keys = PairingKeys()
    keys.address_type = 1
    keys.ltk = PairingKeys.Key(value=ltk, authenticated=True)
    keys.irk = PairingKeys.Key(value=irk, authenticated=True)
    return keys


def add_bond(path: Path, address: str, keys: PairingKeys) -> None:
    """What the daemon commits for a pairing: the `pairing_ok` event, then the bond."""
    with StateStore.open(path) as store:
        store.record_event("pairing_ok", f"{address} passkey", NOW)
        asyncio.run(store.keystore.update(address, keys))


def fail_attempts(path: Path, count: int) -> None:
    """What the daemon commits for `count` wrong PINs (counter, lockout, epoch, together)."""
    config = lockout_config("hardened")
    with StateStore.open(path) as store:
        for n in range(count):
            with store.transaction():
                store.record_event("pairing_failed", "wrong_pin", NOW + n)
                state = record_failure(config, store.lockout_state, NOW + n)
                store.save_lockout_state(state)
                store.advance_epoch()
                if state.locked_until is not None and n == count - 1:
                    store.record_event("locked", "300 s", NOW + n)


# -- the checker ----------------------------------------------------------------------------


def test_an_untouched_file_passes(state: Path) -> None:
    add_bond(state, PHONE, bond_keys())
    before = SecurityState.read(state)
    confirmed = {PHONE: ConfirmedBond(PHONE, LTK.hex(), IRK.hex())}
    check = check_state(state, before, Witness(), confirmed)
    assert check.violations == ()
    assert check.bonds_checked == 1
    assert check.after == before


def test_a_half_written_bond_is_reported(state: Path) -> None:
    add_bond(state, PHONE, bond_keys())
    before = SecurityState.read(state)
    with StateStore.open(state) as store:
        db = store.keystore.connection
        text = db.execute("SELECT keys FROM bonds").fetchone()[0]
        db.execute("UPDATE bonds SET keys = ?", (text[: len(text) // 2],))  # a torn write
        db.execute(
            "INSERT INTO bonds VALUES (?, ?, 0, 0)",
            ("F2:22:33:44:55:66", json.dumps({"address_type": 1, "ltk": {"value": "00ff"}})),
        )
    confirmed = {PHONE: ConfirmedBond(PHONE, LTK.hex(), IRK.hex())}
    check = check_state(state, before, Witness(), confirmed)
    violations = check.violations
    assert check.bonds_checked == 2
    assert any(f"bond {PHONE} is not decodable" in v for v in violations), violations
    assert any("F2:22:33:44:55:66 has no complete LTK" in v for v in violations), violations
    assert any("F2:22:33:44:55:66 has no complete IRK" in v for v in violations), violations


def test_bond_parts_are_each_required() -> None:
    whole = json.dumps(bond_keys().to_dict())
    assert bond_problems(PHONE, whole) == []
    unauthenticated = bond_keys()
    assert unauthenticated.ltk is not None
    unauthenticated.ltk.authenticated = False
    assert bond_problems(PHONE, json.dumps(unauthenticated.to_dict())) == [
        f"bond {PHONE} has an unauthenticated LTK (no PIN was used)"
    ]
    assert bond_problems(PHONE, json.dumps({"ltk": {"value": LTK.hex()}})) == [
        f"bond {PHONE} has no address type",
        f"bond {PHONE} has no complete IRK",
        f"bond {PHONE} has an unauthenticated LTK (no PIN was used)",
    ]


def test_a_file_that_went_backwards_is_reported(state: Path, tmp_path: Path) -> None:
    """An older copy of the file put back (what a lost commit looks like): all of it is seen."""
    older = tmp_path / "older.db"
    shutil.copy(state, older)
    add_bond(state, PHONE, bond_keys())
    fail_attempts(state, 5)  # the fifth locks
    before = SecurityState.read(state)
    assert (before.failures, before.epoch, before.locks) == (5, 5, 1)
    assert before.lockout.locked_until is not None
    shutil.copy(older, state)

    violations = check_state(state, before, Witness(), {}).violations
    assert "failures went backwards: 5 -> 0" in violations
    assert "the epoch went backwards: 5 -> 0" in violations
    assert "lockouts went backwards: 1 -> 0" in violations
    assert any(v.startswith("the lock until") for v in violations), violations
    assert f"bond {PHONE} was lost (no owner ticket revoked it)" in violations


def test_what_the_phones_saw_must_be_on_disk(state: Path) -> None:
    before = SecurityState.read(state)
    fail_attempts(state, 1)
    witness = Witness(wrong_pins=2, locked_refusals=[NOW])
    confirmed = {PHONE: ConfirmedBond(PHONE, LTK.hex(), IRK.hex())}
    violations = check_state(state, before, witness, confirmed).violations
    assert violations == (
        "the phones saw 2 wrong PINs refused, the file counts 1",
        "the phones saw 2 wrong PINs refused, the epoch moved 1",
        f"a phone was refused as locked at {NOW:.3f}; the lock is gone",
        f"bond {PHONE} was confirmed by a protected read, and is gone",
    )
    fail_attempts(state, 1)
    assert check_state(state, before, Witness(wrong_pins=2), {}).violations == ()


def test_a_confirmed_bond_replaced_by_other_keys_is_reported(state: Path) -> None:
    add_bond(state, PHONE, bond_keys(ltk=bytes(16)))
    before = SecurityState.read(state)
    confirmed = {PHONE: ConfirmedBond(PHONE, LTK.hex(), IRK.hex())}
    assert check_state(state, before, Witness(), confirmed).violations == (
        f"bond {PHONE} holds another LTK than the phone's",
    )


def test_a_file_that_does_not_open_is_reported(state: Path) -> None:
    before = SecurityState.read(state)
    state.write_bytes(b"\x00" * 4096)
    check = check_state(state, before, Witness(), {})
    assert check.after is None
    assert check.violations[0].startswith("the state file does not open")
    assert check.violations[1].startswith("SQLite cannot read the file")


async def test_a_lost_cancellation_is_repeated() -> None:
    """Python 3.11's wait_for can drop a cancellation; the loop cancels until the task ends."""
    cancels = 0

    async def stubborn() -> None:
        nonlocal cancels
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancels += 1
                if cancels == 2:
                    raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await stop_workload(task, 1)
    assert task.cancelled() and cancels == 2


async def test_a_workload_that_never_stops_is_a_lab_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("chargepin.lab.crash_loop.workload.STEP_TIMEOUT", 0.3)
    released = False

    async def deaf() -> None:
        while not released:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(10)

    task = asyncio.create_task(deaf())
    await asyncio.sleep(0)
    with pytest.raises(CrashLoopError, match="iteration 7 did not stop"):
        await stop_workload(task, 7)
    released = True
    task.cancel()
    await task


# -- the loop -------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_short_crash_loop_through_the_cli(tmp_path: Path) -> None:
    report_path = tmp_path / "crash.json"
    result = CliRunner().invoke(
        app,
        ["lab", "crash-loop", "--iterations", "5", "--seed", "3", "--json", str(report_path)],
    )
    report = json.loads(report_path.read_text())
    assert result.exit_code == 0, (result.output, [r["violations"] for r in report["iterations"]])
    assert "crash-loop" in result.output and "verdict" in result.output
    assert (
        report["command"]
        == f"chargepin lab crash-loop --iterations 5 --seed 3 --json {report_path}"
    )
    assert report["pass"] is True and report["kept_directory"] is None
    assert report["seed"] == 3 and report["profile"] == "hardened"
    records = report["iterations"]
    assert [r["iteration"] for r in records] == [1, 2, 3, 4, 5]
    totals = report["totals"]
    assert totals["iterations"] == 5 and totals["violations"] == 0
    assert totals["restarts_ok"] == 5  # every kill was followed by a daemon that served again
    assert totals["failures_recorded"] >= totals["failures_observed"]
    for record in records:
        assert record["killed"], record
        assert record["violations"] == []
        assert record["after"] is not None and record["restart_s"] is not None
        assert record["failures_recorded"] >= record["failures_observed"]
        assert record["after"]["epoch"] >= record["before"]["epoch"]
        assert record["after"]["failures"] >= record["before"]["failures"]
    assert sum(r["bonds_checked"] for r in records) == totals["bonds_checked"] > 0
