"""`chargepin charger init|info|pin` on real state files, through the Typer app.

The commands are thin; these tests check what a factory operator or a support engineer sees:
the summary, the one-line errors and their exit codes, and that what was written is what the
core rules say (PIN class from the policy, lockout numbers from the profile).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from bumble.keys import PairingKeys

from chargepin.charger.store import StateStore
from chargepin.core.epochs import epoch_pin
from chargepin.core.lockout import LockoutScope, LockoutState, record_failure
from chargepin.core.profiles import lockout_config
from tests.helpers.cli import invoke

SECRET_HEX = "5e" * 32
SECRET = bytes.fromhex(SECRET_HEX)
SERIAL = "PX-2025_000123"
ADDRESS = "C0:12:34:56:78:9A"
MANDATORY = ["--model", "Pulsar Max", "--firmware", "6.11.2", "--produced", "2025-09-01"]
OPTIONAL = ["--model", "Volt Home", "--firmware", "6.8.0", "--produced", "2024-03-15"]
UNSUPPORTED = ["--model", "Volt Home", "--firmware", "6.7.16", "--produced", "2024-03-15"]


def init(state: Path, *extra: str, spec: list[str] = MANDATORY) -> tuple[int, str, str]:
    return invoke("charger", "init", "--state", str(state), "--serial", SERIAL, *spec, *extra)


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    """Expected failures print exactly one line `error: ...`, never a traceback."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_init_provisions_a_mandatory_charger_without_printing_secrets(tmp_path: Path) -> None:
    state = tmp_path / "charger.db"
    code, out, err = init(state, "--secret", SECRET_HEX, "--address", ADDRESS.lower())

    assert code == 0, err
    pin = epoch_pin(SECRET, SERIAL, 0).digits
    assert SERIAL in out and ADDRESS in out and "mandatory" in out and "hardened" in out
    assert SECRET_HEX not in out and pin not in out
    with StateStore.open(state) as store:
        assert store.identity.address == ADDRESS
        assert store.identity.model == "Pulsar Max"
        assert store.secret == SECRET
        assert store.pin_enabled
        assert store.epoch == 0
        assert store.profile == "hardened"
        assert store.lockout_config == lockout_config("hardened")
        assert len(store.identity.irk) == 16 and store.identity.irk != bytes(16)


def test_init_takes_the_secret_from_the_environment(tmp_path: Path) -> None:
    """A secret on the command line is visible to every user in `ps`; the environment is not."""
    state = tmp_path / "charger.db"
    code, _, err = invoke(
        "charger",
        "init",
        "--state",
        str(state),
        "--serial",
        SERIAL,
        *MANDATORY,
        env={"CHARGEPIN_FACTORY_SECRET": SECRET_HEX},
    )

    assert code == 0, err
    with StateStore.open(state) as store:
        assert store.secret == SECRET


def test_init_generates_a_new_secret_address_and_irk_each_time(tmp_path: Path) -> None:
    assert init(tmp_path / "a.db")[0] == 0
    assert init(tmp_path / "b.db")[0] == 0

    with StateStore.open(tmp_path / "a.db") as a, StateStore.open(tmp_path / "b.db") as b:
        assert a.secret != b.secret
        assert a.identity.address != b.identity.address
        assert a.identity.irk != b.identity.irk


def test_init_applies_lockout_overrides_to_the_chosen_profile(tmp_path: Path) -> None:
    state = tmp_path / "charger.db"
    code, out, err = init(
        state,
        "--profile",
        "classic",
        "--lockout-failures",
        "3",
        "--lockout-window",
        "30",
        "--lockout-seconds",
        "120",
    )

    assert code == 0, err
    assert "classic" in out and "every connection" in out
    with StateStore.open(state) as store:
        assert store.profile == "classic"
        config = store.lockout_config
    assert config == lockout_config("classic", failures=3, window=30.0, duration=120.0)
    assert config.scope is LockoutScope.ALL


def test_init_refuses_lockout_numbers_the_rules_forbid(tmp_path: Path) -> None:
    state = tmp_path / "charger.db"
    code, _, err = init(state, "--lockout-window", "600", "--lockout-seconds", "60")

    assert code == 2
    assert_one_line_error(err, "duration", "window")
    assert not state.exists()


def test_init_refuses_an_existing_state_file_and_leaves_it_alone(tmp_path: Path) -> None:
    state = tmp_path / "charger.db"
    assert init(state, "--secret", SECRET_HEX)[0] == 0

    code, _, err = init(state)

    assert code == 2
    assert_one_line_error(err, "already exists")
    with StateStore.open(state) as store:
        assert store.secret == SECRET


def test_init_refuses_firmware_without_pin_support_with_the_policys_reason(
    tmp_path: Path,
) -> None:
    state = tmp_path / "charger.db"
    code, out, err = init(state, spec=UNSUPPORTED)

    assert code == 2
    assert_one_line_error(err, "6.7.16", "does not support a PIN", "update the charger")
    assert out == ""
    assert not state.exists()


def test_init_provisions_an_optional_class_charger_with_the_pin_off(tmp_path: Path) -> None:
    state = tmp_path / "charger.db"
    code, out, err = init(state, spec=OPTIONAL)

    assert code == 0, err
    assert "optional" in out and "off" in out
    with StateStore.open(state) as store:
        assert not store.pin_enabled


@pytest.mark.parametrize(
    ("secret", "fragment"),
    [
        ("5e" * 31, "got 62"),
        ("5e" * 33, "got 66"),
        ("zz" * 32, "hexadecimal"),
        ("", "got 0"),
    ],
)
def test_init_refuses_a_malformed_secret(tmp_path: Path, secret: str, fragment: str) -> None:
    state = tmp_path / "charger.db"
    code, _, err = init(state, "--secret", secret)

    assert code == 2
    assert_one_line_error(err, "64 hexadecimal characters", fragment)
    assert not state.exists()


@pytest.mark.parametrize("produced", ["2025-13-01", "01/09/2025", "yesterday"])
def test_init_refuses_a_bad_production_date(tmp_path: Path, produced: str) -> None:
    state = tmp_path / "charger.db"
    spec = ["--model", "Pulsar Max", "--firmware", "6.11", "--produced", produced]
    code, _, err = init(state, spec=spec)

    assert code == 2
    assert "--produced" in err
    assert not state.exists()


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("--address", "00:12:34:56:78:9A", "not a random static address"),
        ("--address", "C0:12:34", "not a random static address"),
        ("--firmware", "six.eleven", "firmware version"),
        ("--serial", "has spaces", "serial"),
    ],
)
def test_init_refuses_bad_identity_values(
    tmp_path: Path, option: str, value: str, fragment: str
) -> None:
    state = tmp_path / "charger.db"
    args = {
        "--serial": SERIAL,
        "--model": "Pulsar Max",
        "--firmware": "6.11.2",
        "--produced": "2025-09-01",
    }
    args[option] = value
    flat = [item for name, text in args.items() for item in (name, text)]
    code, _, err = invoke("charger", "init", "--state", str(state), *flat)

    assert code == 2
    assert_one_line_error(err, fragment)
    assert not state.exists()


def test_pin_prints_the_pin_of_the_current_epoch(tmp_path: Path) -> None:
    state = tmp_path / "charger.db"
    assert init(state, "--secret", SECRET_HEX)[0] == 0

    code, out, err = invoke("charger", "pin", "--state", str(state))

    assert code == 0, err
    assert out == epoch_pin(SECRET, SERIAL, 0).digits + "\n"
    assert len(out.strip()) == 6 and out.strip().isdigit()

    with StateStore.open(state) as store:
        store.advance_epoch()
    assert invoke("charger", "pin", "--state", str(state))[1].strip() == (
        epoch_pin(SECRET, SERIAL, 1).digits
    )


async def test_info_json_reports_identity_pin_lockout_bonds_and_counters(tmp_path: Path) -> None:
    state = tmp_path / "charger.db"
    assert init(state, "--secret", SECRET_HEX, "--address", ADDRESS)[0] == 0
    now = time.time()
    with StateStore.open(state) as store:
        config = store.lockout_config
        lock = LockoutState()
        for _ in range(config.failures):
            lock = record_failure(config, lock, now)
        store.save_lockout_state(lock)
        store.advance_epoch()
        store.record_event("pairing_failed", "test", now)
        store.record_event("locked", "test", now)
        keys = PairingKeys.from_dict(
            {"ltk": {"value": "00112233445566778899aabbccddeeff", "authenticated": True}}
        )
        phone = "D1:22:33:44:55:66"
        await store.keystore.update(phone, keys)

    code, out, err = invoke("charger", "info", "--state", str(state), "--json")

    assert code == 0, err
    info = json.loads(out)
    assert info["serial"] == SERIAL
    assert info["model"] == "Pulsar Max"
    assert info["firmware"] == "6.11.2"
    assert info["produced"] == "2025-09-01"
    assert info["address"] == ADDRESS
    assert info["pin_class"] == "mandatory"
    assert "6.11" in info["pin_class_reason"]
    assert info["pin_enabled"] is True
    assert info["epoch"] == 1
    assert info["profile"] == "hardened"
    assert info["lockout"]["locked"] is True
    # `at` is the instant the report evaluated the lock: what is left of the 300 s lock that
    # began at `now`, however long the machine took to get there.
    assert now <= info["at"]
    assert info["lockout"]["retry_after"] == pytest.approx(now + 300 - info["at"])
    assert info["lockout"]["config"] == lockout_config("hardened").to_dict()
    assert info["bonds"] == [
        {"address": phone, "authenticated": True, "created": info["bonds"][0]["created"]}
    ]
    assert now <= info["bonds"][0]["created"] <= info["at"]
    assert info["counters"]["pairing_failed"] == 1
    assert info["counters"]["locked"] == 1
    assert info["counters"]["pairing_ok"] == 0
    # What waits for the CSMS: the failure (the lockout's event is its own) and the lockout.
    assert info["ocpp"] == {
        "queued_events": 2,
        "oldest_queued_at": now,
        "password": "derived",
    }
    assert SECRET_HEX not in out
    assert epoch_pin(SECRET, SERIAL, 1).digits not in out


def test_info_counts_failures_in_the_window_while_not_locked(tmp_path: Path) -> None:
    state = tmp_path / "charger.db"
    assert init(state, spec=OPTIONAL)[0] == 0
    now = time.time()
    with StateStore.open(state) as store:
        config = store.lockout_config
        lock = record_failure(config, record_failure(config, LockoutState(), now - 1), now)
        store.save_lockout_state(lock)

    info = json.loads(invoke("charger", "info", "--state", str(state), "--json")[1])

    assert info["pin_class"] == "optional"
    assert info["pin_enabled"] is False
    assert info["lockout"] | {"config": None} == {
        "locked": False,
        "retry_after": 0.0,
        "failures_in_window": 2,
        "config": None,
    }


def test_info_table_names_the_charger_and_its_state(tmp_path: Path) -> None:
    state = tmp_path / "charger.db"
    assert init(state, "--secret", SECRET_HEX, "--address", ADDRESS)[0] == 0

    code, out, err = invoke("charger", "info", "--state", str(state))

    assert code == 0, err
    for fragment in (
        SERIAL,
        ADDRESS,
        "mandatory",
        "not locked",
        "no event waiting for the CSMS, derived password",
        "Paired phones: none",
        "Events",
    ):
        assert fragment in out
    assert epoch_pin(SECRET, SERIAL, 0).digits not in out


@pytest.mark.parametrize("command", ["info", "pin"])
def test_missing_state_file_is_one_line_with_the_next_step(tmp_path: Path, command: str) -> None:
    state = tmp_path / "nowhere.db"
    code, out, err = invoke("charger", command, "--state", str(state))

    assert code == 2
    assert out == ""
    assert_one_line_error(err, "no charger state", "chargepin charger init")
    assert not state.exists()


@pytest.mark.parametrize("content", [b"", b"this is not a database" * 100])
def test_run_refuses_a_corrupt_state_file_before_touching_the_radio(
    tmp_path: Path, content: bytes
) -> None:
    state = tmp_path / "charger.db"
    state.write_bytes(content)
    # Nothing listens on this port: the state file must be refused before it is tried.
    code, out, err = invoke(
        "charger", "run", "--state", str(state), "--transport", "tcp-client:127.0.0.1:9"
    )

    assert code == 2
    assert "READY" not in out
    assert_one_line_error(err, str(state))


def test_run_refuses_a_transport_off_loopback(tmp_path: Path) -> None:
    state = tmp_path / "charger.db"
    assert init(state)[0] == 0

    code, _, err = invoke(
        "charger", "run", "--state", str(state), "--transport", "tcp-client:192.0.2.1:9001"
    )

    assert code == 2
    assert_one_line_error(err, "loopback")


def test_version_and_help_list_every_command() -> None:
    code, out, _ = invoke("--version")
    assert code == 0 and out.startswith("chargepin ")

    code, out, _ = invoke("--help")
    assert code == 0
    for command in ("charger", "phone", "radio", "demo", "bench"):
        assert command in out
    code, out, _ = invoke("charger", "--help")
    for command in ("init", "info", "pin", "run"):
        assert command in out
    code, out, _ = invoke("phone", "--help")
    for command in ("scan", "pair", "info", "status", "start", "stop", "limit", "forget"):
        assert command in out
