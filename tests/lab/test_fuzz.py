"""The fuzz targets of `chargepin lab fuzz` in the suite, the runner, and the bugs they found.

Every target in TARGETS runs 100 to 300 hypothesis examples here (all together well under
30 s); `chargepin lab fuzz --minutes M` runs the same targets for minutes
(docs/SECURITY.md, "Fuzzing"). The regression cases at the end are minimal failing examples
the fuzzer found, each fixed in the parser it broke.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from chargepin.cli import app
from chargepin.core.protocol import ADMIN_UUID, AdminResult
from chargepin.lab import fuzz
from chargepin.lab.fuzz import (
    GATT_TARGET,
    ExampleHang,
    gatt_harness,
    run_batch,
    run_target,
    time_limit,
)
from chargepin.lab.strategies import (
    OWNER,
    STRANGER,
    TARGETS,
    BundleCase,
    ByteDamage,
    FuzzTarget,
    GattWrite,
    SqlEdit,
    StateFileCase,
    StickerCase,
    real_state_file,
)

SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]
EXAMPLES = {"bundle-file": 100, "state-file-damage": 150, "state-file-values": 100}
"""Examples per target here (200 unless listed): the file targets cost milliseconds each."""


# ------------------------------------------------------------------------------ every target


@pytest.mark.parametrize("name", list(TARGETS))
def test_target_holds(name: str) -> None:
    target = TARGETS[name]

    @settings(max_examples=EXAMPLES.get(name, 200), deadline=None, suppress_health_check=SUPPRESSED)
    @given(target.strategy)
    def check(example: Any) -> None:
        target.check(example)

    check()


def test_gatt_target_holds(tmp_path: Path) -> None:
    """The lab's GATT target: a PIN-paired phone and an unpaired central write everything."""
    with gatt_harness(tmp_path) as harness:
        target = harness.target()

        @settings(max_examples=300, deadline=None, suppress_health_check=SUPPRESSED)
        @given(target.strategy)
        def check(example: GattWrite) -> None:
            target.check(example)

        check()


def test_gatt_target_writes_from_both_centrals_to_every_attribute(tmp_path: Path) -> None:
    """Guards the strategy: no attribute and no central is left out."""
    with gatt_harness(tmp_path) as harness:
        target = harness.target()
        seen: set[tuple[str, int]] = set()

        @settings(max_examples=600, deadline=None, suppress_health_check=SUPPRESSED)
        @given(target.strategy)
        def collect(example: GattWrite) -> None:
            seen.add((example.central, example.handle))

        collect()
        handles = {handle for _, handle in seen}
        assert len(handles) >= 25  # the whole table (27 attributes today)
        assert {central for central, _ in seen} == {OWNER, STRANGER}


# ------------------------------------------------------------------------------ the runner


def planted(data: bytes) -> None:
    """A parser with a bug: it fails on any input holding the byte 0x42."""
    if b"B" in data:
        raise KeyError("planted")


PLANTED = FuzzTarget("planted", "a parser with a planted bug", st.binary(max_size=64), planted)


def test_a_failing_batch_reports_the_minimal_example() -> None:
    calls, failure = run_batch(PLANTED, seed=1, examples=500, limit=None)
    assert failure is not None
    assert failure.example == "b'B'"
    assert failure.error == "KeyError: 'planted'"
    assert failure.seed == 1
    assert calls > 1


def test_a_target_runs_batches_until_its_time_is_up() -> None:
    ticks = iter(range(1000))
    run = run_target(TARGETS["status"], until=6.0, seed=1, clock=lambda: float(next(ticks)))
    assert run.batches == 2  # ticks: 1 s per clock reading, so 3 s per batch
    assert run.examples > fuzz.FIRST_BATCH
    assert run.failures == []


def test_a_hanging_example_is_stopped() -> None:
    hang = 5.0
    started = time.monotonic()
    with pytest.raises(ExampleHang, match="a hang"), time_limit(0.2):
        time.sleep(hang)
    assert time.monotonic() - started < hang  # interrupted, not raised after the sleep ended


def test_the_cli_runs_every_target_and_writes_the_report(tmp_path: Path) -> None:
    path = tmp_path / "fuzz.json"
    args = ["lab", "fuzz", "--minutes", "0.05", "--seed", "3", "--json", str(path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(path.read_text())
    assert report["command"] == f"chargepin lab fuzz --minutes 0.05 --seed 3 --json {path}"
    assert (report["seed"], report["minutes"], report["pass"]) == (3, 0.05, True)
    targets = {target["name"]: target for target in report["targets"]}
    assert list(targets) == [*TARGETS, GATT_TARGET]
    for name, target in targets.items():
        assert target["examples"] > 0, name
        assert target["failures"] == [], name
    assert report["examples"] == sum(target["examples"] for target in targets.values())
    assert "gatt-writes" in result.output


def test_the_cli_reports_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner is under test here, so the targets it runs are swapped for a planted bug."""
    monkeypatch.setattr(fuzz, "TARGETS", {PLANTED.name: PLANTED})
    path = tmp_path / "fuzz.json"
    result = CliRunner().invoke(app, ["lab", "fuzz", "--minutes", "0.02", "--json", str(path)])
    assert result.exit_code == 1, result.output
    report = json.loads(path.read_text())
    assert report["pass"] is False
    (planted_run, gatt_run) = report["targets"]
    assert planted_run["failures"][0]["example"] == "b'B'"
    assert planted_run["failures"][0]["error"] == "KeyError: 'planted'"
    assert gatt_run["failures"] == []
    assert "b'B'" in result.output


# ------------------------------------------------------------------------------ regressions


def _flipped_schema() -> StateFileCase:
    """A bit flip in the stored CREATE TABLE text: SQLite's own error message is not UTF-8."""
    at = real_state_file().index(b"CREATE TABLE identity") + 3
    return StateFileCase(damage=(ByteDamage("flip", at, b"\x80"),))


def _set(table: str, column: str, value: object) -> StateFileCase:
    return StateFileCase(edits=(SqlEdit(f"UPDATE {table} SET {column} = ?", (value,)),))


REGRESSIONS: list[tuple[str, Any]] = [
    # AdminResult.encode cut the detail by characters: a refusal quoting a non-ASCII serial
    # did not encode, and the daemon never answered the admin result read.
    ("admin-result-encode", AdminResult(ok=False, reason="foreign", detail="€" * 100)),
    # ProvisioningBundle.from_json let RecursionError out; read_bundle let UnicodeDecodeError out.
    ("bundle-file", BundleCase(b"[" * 100_000)),
    ("bundle-file", BundleCase(b'\xfb{"format": 1}')),
    # str.upper() read look-alikes as the claim alphabet: "ſ" (long s) as S, "ı" as I.
    ("sticker", StickerCase("CHARGEPIN:1:CP00000001:ſſſſſſſſſſſſ")),
    ("sticker", StickerCase("CHARGEPİN:1:CP00000001:ABCDEFGHJKMN")),
    # StateStore.open let UnicodeDecodeError, RecursionError and OverflowError out, and did not
    # read the profile, counters, events and bonds: the daemon or `charger info` crashed later.
    ("state-file-damage", _flipped_schema()),
    ("state-file-values", _set("lockout", "state", "[" * 100_000)),
    ("state-file-values", _set("pin_config", "epoch", "1" + "0" * 400)),
    # An epoch past 2**32 - 1 opened, then the daemon could not advertise it (struct.error).
    ("state-file-values", _set("pin_config", "epoch", 2**32)),
    ("state-file-values", _set("settings", "profile", "paranoid")),
    ("state-file-values", _set("counters", "count", "many")),
    ("state-file-values", _set("events", "at", "yesterday")),
    ("state-file-values", _set("bonds", "keys", "garbage")),
    ("state-file-values", _set("bonds", "keys", '{"ltk": 5}')),
    ("state-file-values", _set("bonds", "keys", '{"irk": {"value": "00"}}')),
    ("state-file-values", _set("bonds", "address", None)),
    ("state-file-values", _set("bonds", "created", "")),
]


@pytest.mark.parametrize(
    ("name", "example"), REGRESSIONS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(REGRESSIONS)]
)
def test_regression(name: str, example: Any) -> None:
    TARGETS[name].check(example)


def test_regression_admin_result_over_the_air(tmp_path: Path) -> None:
    """A paired phone writes a ticket naming a charger with a long non-ASCII serial; the
    refusal quotes it, and the admin result read must still be answered."""
    serial = ("€" * 80).encode()
    blob = bytes([1, len(serial)]) + serial + bytes(40)
    with gatt_harness(tmp_path) as harness:
        handle = harness.ensure().table.value(ADMIN_UUID).handle
        for with_response in (True, False):
            harness.check(GattWrite(OWNER, handle, "admin", blob, with_response))
