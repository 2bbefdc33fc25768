"""`chargepin lab crash-loop --power-cut`: the shim keeps exactly what was fsynced, and the
oracle, fed with what a cut left, tells an allowed loss from a broken promise.

A small workload of our own runs under the real shim (compiled with gcc, as the lab does) on a
provisioned charger file: it commits as the daemon does, or with the level a bug would use,
prints when the phone would have seen the outcome, and is cut. Then a short loop through the CLI.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chargepin.charger.service import provision_charger
from chargepin.cli import app
from chargepin.core.policy import FirmwareVersion
from chargepin.lab.crash_loop import ConfirmedBond, Witness, check_state
from chargepin.lab.crash_loop.power_cut import (
    DurableImage,
    PowerCutError,
    lost_writes,
    shim_library,
)
from chargepin.lab.security_state import SecurityState

PHONE = "F1:22:33:44:55:66"
LTK = bytes(range(16))
IRK = bytes(range(16, 32))

WORKLOAD = """
import asyncio, sys
from bumble.keys import PairingKeys
from chargepin.charger.store import StateStore
from chargepin.core.durability import Durability

path, steps = sys.argv[1], sys.argv[2:]
store = StateStore.open(path)
for step in steps:
    print("start", step, flush=True)
    if step == "pair":  # what a success commits: the event, then the bond, both ORDERED
        keys = PairingKeys()
        keys.address_type = 1
        keys.ltk = PairingKeys.Key(value=bytes(range(16)), authenticated=True)
        keys.irk = PairingKeys.Key(value=bytes(range(16, 32)), authenticated=True)
        with store.transaction(Durability.ORDERED):
            store.record_event("pairing_ok", "F1:22:33:44:55:66 passkey", 0.0)
        asyncio.run(store.keystore.update("F1:22:33:44:55:66", keys))
    elif step in ("fail", "fail-unsynced"):  # a wrong PIN: counted, and the epoch moved
        level = "NORMAL" if step == "fail-unsynced" else "FULL"
        # What a daemon with the bug would do: the failure's commit left unsynced. The store
        # never commits it so, whatever its caller asks: set the connection's level by hand
        # and write the same rows the daemon's failure writes.
        db = store.keystore.connection
        db.execute(f"PRAGMA synchronous = {level}")
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO counters (kind, count) VALUES ('pairing_failed', 1)"
                   " ON CONFLICT (kind) DO UPDATE SET count = count + 1")
        db.execute("UPDATE pin_config SET epoch = epoch + 1")
        db.execute("COMMIT")
        db.execute("PRAGMA synchronous = FULL")
    print(step, flush=True)  # the phone sees the outcome only now
print("DONE", flush=True)
"""


@pytest.fixture(scope="module")
def shim() -> Path:
    return shim_library()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "charger.db"
    provision_charger(
        path,
        serial="CP-CUT-1",
        model="Pulsar Max",
        firmware=FirmwareVersion.parse("6.11.2"),
        produced=datetime.date(2025, 9, 1),
    )
    return path


def run_then_cut(
    state: Path, shim: Path, steps: list[str], *, cut: bool = True
) -> tuple[dict[str, float], dict[str, dict[str, int | bool | None]] | None]:
    """Run the workload's `steps` under the shim, SIGKILL it once it said DONE, then (`cut`)
    put back the durable image. Returns when each step was seen, and what the cut kept."""
    image = DurableImage.beside(state)
    image.seed()
    child = subprocess.Popen(
        [sys.executable, "-c", WORKLOAD, str(state), *steps],
        stdout=subprocess.PIPE,
        text=True,
        env=image.environment(shim),
    )
    seen = {}
    try:
        assert child.stdout is not None
        for line in child.stdout:
            seen[line.strip()] = time.monotonic()
            if line.strip() == "DONE":
                break
    finally:
        child.kill()
        child.wait(10)
    assert "DONE" in seen, "the workload under the shim did not finish"
    return seen, image.cut() if cut else None


def test_the_shim_images_follow_the_fsyncs_sqlite_makes(state: Path, shim: Path) -> None:
    """A synced failure survives the cut; the successes before it too (its fsync covers them);
    a success with nothing synced after it is gone."""
    before = SecurityState.read(state)
    _, kept = run_then_cut(state, shim, ["pair", "fail", "pair"])
    assert kept is not None
    after = SecurityState.read(state)
    assert (after.failures, after.epoch) == (before.failures + 1, before.epoch + 1)
    assert after.addresses == (PHONE,) and after.successes == 1  # the second pair is gone
    assert lost_writes(kept), kept


def test_a_failure_committed_unsynced_is_a_violation_after_a_power_cut(
    state: Path, shim: Path
) -> None:
    """The bug the mode exists for: a failure committed ORDERED. A kill -9 cannot see it (the
    kernel still writes the commit); a power cut takes it back and the oracle reports it."""
    before = SecurityState.read(state)
    witness = Witness(wrong_pins=1)

    run_then_cut(state, shim, ["fail"])
    assert check_state(state, before, witness, {}, power_cut=True).violations == ()

    run_then_cut(state, shim, ["fail-unsynced"], cut=False)  # kill -9 only: still there
    before = SecurityState.read(state)
    assert before.failures == 2

    run_then_cut(state, shim, ["fail-unsynced"])
    assert check_state(state, before, witness, {}, power_cut=True).violations == (
        "the phones saw 1 wrong PINs refused, the file counts 0",
        "the phones saw 1 wrong PINs refused, the epoch moved 0",
    )


def test_a_success_may_be_lost_only_if_no_synced_commit_followed(state: Path, shim: Path) -> None:
    before = SecurityState.read(state)
    bond = {PHONE: ConfirmedBond(PHONE, LTK.hex(), IRK.hex())}

    seen, _ = run_then_cut(state, shim, ["pair"])
    witness = Witness(paired_at={PHONE: seen["pair"]})
    check = check_state(state, before, witness, bond, power_cut=True)
    assert check.violations == () and check.successes_lost == (PHONE,)
    assert SecurityState.read(state).addresses == ()
    # The same cut after a kill -9 (no power cut allowed): the lost bond is a violation.
    assert check_state(state, before, witness, bond).violations == (
        f"bond {PHONE} was confirmed by a protected read, and is gone",
    )

    seen, _ = run_then_cut(state, shim, ["pair", "fail"])
    witness = Witness(wrong_pins=1, paired_at={PHONE: seen["pair"]}, synced_at=[seen["start fail"]])
    check = check_state(state, before, witness, bond, power_cut=True)
    assert check.violations == () and check.successes_lost == () and check.successes_synced == 1
    assert SecurityState.read(state).addresses == (PHONE,)


def test_a_success_followed_by_an_unsynced_failure_is_caught(state: Path, shim: Path) -> None:
    """A success, then a failure left unsynced: both gone after the cut, and the oracle, told
    that a refusal came after the bond, names the bond as well as the failure."""
    before = SecurityState.read(state)
    seen, _ = run_then_cut(state, shim, ["pair", "fail-unsynced"])
    witness = Witness(
        wrong_pins=1, paired_at={PHONE: seen["pair"]}, synced_at=[seen["start fail-unsynced"]]
    )
    bond = {PHONE: ConfirmedBond(PHONE, LTK.hex(), IRK.hex())}
    violations = check_state(state, before, witness, bond, power_cut=True).violations
    assert f"bond {PHONE} was confirmed by a protected read, and is gone" in violations
    assert "the phones saw 1 wrong PINs refused, the file counts 0" in violations


def test_a_missing_or_failing_compiler_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing built yet
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(PowerCutError, match=r"cannot run the C compiler .*no-such-cc"):
        shim_library()
    monkeypatch.setenv("CC", "false")
    with pytest.raises(PowerCutError, match="false could not build the power-cut shim"):
        shim_library()
    assert list((tmp_path / "chargepin").iterdir()) == []  # no half-built library left


@pytest.mark.slow
def test_a_short_power_cut_loop_through_the_cli(tmp_path: Path) -> None:
    """Seed 222 kills as a phone finishes a pairing, in both iterations (and plans no owner
    ticket): the second cut lands after a guest's confirmed bond with no refusal since, so it
    takes that bond back."""
    report_path = tmp_path / "cut.json"
    arguments = ["--power-cut", "--iterations", "2", "--seed", "222", "--json", str(report_path)]
    result = CliRunner().invoke(app, ["lab", "crash-loop", *arguments])
    report = json.loads(report_path.read_text())
    assert result.exit_code == 0, (result.output, [r["violations"] for r in report["iterations"]])
    assert "power-cut" in result.output
    assert report["mode"] == "power-cut" and "--power-cut" in report["command"]
    totals = report["totals"]
    assert totals["iterations"] == 2 and totals["violations"] == 0
    assert totals["restarts_ok"] == 2
    assert totals["cuts_that_lost_writes"] >= 1, totals
    assert totals["successes_lost"] >= 1, totals  # allowed: no refusal came after it
    assert totals["paired_again"] >= totals["successes_lost"], totals
    for record in report["iterations"]:
        assert record["kill_moment"] == "bonded"
        assert set(record["power_cut"]) >= {"charger.db", "charger.db-shm"}
        assert record["failures_recorded"] >= record["failures_observed"]


@pytest.mark.slow
def test_a_revocation_acknowledged_at_the_cut_stays_through_the_cli(tmp_path: Path) -> None:
    """Seed 92 plans a revocation first (the owner pairs, a guest pairs, the owner writes the
    remove_phone ticket) and cuts the power the instant the owner holds its receipt: the bond
    must be gone from the file and the revoked phone, holding its old bond, must be refused by
    the restarted daemon."""
    report_path = tmp_path / "revoke.json"
    arguments = ["--power-cut", "--iterations", "1", "--seed", "92", "--json", str(report_path)]
    result = CliRunner().invoke(app, ["lab", "crash-loop", *arguments])
    report = json.loads(report_path.read_text())
    [record] = report["iterations"]
    assert result.exit_code == 0, (result.output, record["violations"])
    assert "owner tickets" in result.output
    assert record["kill_moment"] == "receipt" and record["killed"] == "as a phone saw receipt #1"
    [ticket] = record["owner_tickets"]
    assert ticket["action"] == "remove_phone" and ticket["acknowledged"] is True
    assert record["after"]["bond_removals"] == record["before"]["bond_removals"] + 1
    assert record["revoked_refused"] == [True]
    totals = report["totals"]
    assert totals["revocations"] == totals["owner_acknowledged"] == 1
    assert totals["revoked_refused_after_restart"] == 1 and totals["violations"] == 0


@pytest.mark.slow
def test_a_forget_bonds_acknowledged_at_the_cut_stays_through_the_cli(tmp_path: Path) -> None:
    """Seed 113 plans a change_pin with forget_bonds first (the owner pairs, a guest pairs, the
    owner writes the ticket) and cuts the power the instant the owner holds its receipt: both
    bonds must be gone with the PIN change, the guest holding its old bond refused by the
    restarted daemon, and the owner, its old bond refused too, pairs again with the new PIN."""
    report_path = tmp_path / "forget.json"
    arguments = ["--power-cut", "--iterations", "1", "--seed", "113", "--json", str(report_path)]
    result = CliRunner().invoke(app, ["lab", "crash-loop", *arguments])
    report = json.loads(report_path.read_text())
    [record] = report["iterations"]
    assert result.exit_code == 0, (result.output, record["violations"])
    assert record["kill_moment"] == "receipt" and record["killed"] == "as a phone saw receipt #1"
    [ticket] = record["owner_tickets"]
    assert ticket["action"] == "change_pin forget_bonds" and ticket["acknowledged"] is True
    assert ticket["bonds"] == 2 and len(record["bonds_forgotten"]) == 2
    assert record["after"]["bonds"] == 0
    assert record["after"]["pin_changes"] == record["before"]["pin_changes"] + 1
    assert record["revoked_refused"] == [True]
    [owner] = record["reconnects"]
    assert owner["ok"] is False and owner["paired_again"] == "ok"
    totals = report["totals"]
    assert totals["forget_bonds"] == totals["owner_acknowledged"] == 1
    assert totals["bonds_forgotten"] == 2 and totals["violations"] == 0
