"""The charger's record of applied fleet commands (charger/store.py, core/applied_ops.py):
durable, bounded, in the commit of the change it records, upgraded into old files, and a
damaged one refused with what to do."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from chargepin.charger.errors import StateError
from chargepin.charger.store import SCHEMA_VERSION, StateStore
from chargepin.core.applied_ops import MAX_APPLIED_OPS
from chargepin.core.tickets import new_op
from tests.charger.applied_ops_child import op_of
from tests.charger.test_store import provision

CHILD = Path(__file__).with_name("applied_ops_child.py")


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    provision(tmp_path / "charger.db").close()
    return tmp_path / "charger.db"


def test_the_record_survives_a_reopen_and_keeps_the_last_64(state_path: Path) -> None:
    made = [new_op() for _ in range(MAX_APPLIED_OPS + 3)]
    with StateStore.open(state_path) as store:
        assert store.applied_ops.ops == ()
        for op in made:
            store.record_op(op)
        store.record_op(None)
    with StateStore.open(state_path) as store:
        assert store.applied_ops.ops == tuple(made[3:])


def test_an_op_is_kept_only_with_the_change_it_records(state_path: Path) -> None:
    op = new_op()
    with StateStore.open(state_path) as store:
        with pytest.raises(RuntimeError), store.transaction():
            store.save_pin_state(store.pin_state.rekeyed())
            store.record_op(op)
            raise RuntimeError("power cut before the commit")
        assert (store.generation, store.applied_ops.ops) == (0, ())


def test_a_schema_3_file_gains_an_empty_record_and_keeps_its_state(state_path: Path) -> None:
    with StateStore.open(state_path) as store:
        store.advance_epoch()
    with sqlite3.connect(state_path) as connection:
        connection.executescript("DROP TABLE applied_ops; PRAGMA user_version = 3;")
    with StateStore.open(state_path) as store:
        assert store.epoch == 1 and store.applied_ops.ops == ()
        version = store.keystore.connection.execute("PRAGMA user_version").fetchone()[0]
        assert version == SCHEMA_VERSION == 4
        store.record_op("a" * 32)
    with StateStore.open(state_path) as store:
        assert store.applied_ops.ops == ("a" * 32,)


@pytest.mark.parametrize("ops", ["[", '["not an op"]', '["' + "0" * 32 + '"] x', "null"])
def test_a_damaged_record_is_refused_at_open_with_the_fix(state_path: Path, ops: str) -> None:
    with sqlite3.connect(state_path) as connection:
        connection.execute("UPDATE applied_ops SET ops = ?", (ops,))
    with pytest.raises(StateError, match=r"damaged record of applied commands.*ops = '\[\]'"):
        StateStore.open(state_path)
    with sqlite3.connect(state_path) as connection:
        connection.execute("UPDATE applied_ops SET ops = '[]'")
    StateStore.open(state_path).close()


def test_a_missing_record_row_is_refused_at_open(state_path: Path) -> None:
    with sqlite3.connect(state_path) as connection:
        connection.execute("DELETE FROM applied_ops")
    with pytest.raises(StateError, match="table applied_ops has no row"):
        StateStore.open(state_path)


@pytest.mark.slow
def test_kill_9_keeps_each_op_with_its_change(state_path: Path) -> None:
    """A re-key and its op commit together: whatever instant the process dies, the generation
    the file holds is the one its newest op stands for (op g moved it to generation g)."""
    last = 0
    for wanted in (5, 40):
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(state_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None and child.stderr is not None
        printed = [child.stdout.readline() for _ in range(wanted)]
        child.send_signal(signal.SIGKILL)
        printed += child.stdout.read().splitlines()
        errors = child.stderr.read()
        child.wait()
        assert child.returncode == -signal.SIGKILL, errors
        with StateStore.open(state_path) as store:
            generation = store.generation
            # The ticket after the last printed one may have committed before the kill.
            assert generation in (int(printed[-1]), int(printed[-1]) + 1)
            assert generation >= last + wanted
            ops = store.applied_ops.ops
            assert ops[-1] == op_of(generation)
            assert ops == tuple(map(op_of, range(generation - len(ops) + 1, generation + 1)))
            last = generation
