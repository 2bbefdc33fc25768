"""The charger's OCPP device model (chargepin.core.device_model)."""

from __future__ import annotations

import pytest

from chargepin.core import device_model
from chargepin.core.device_model import (
    GetStatus,
    NewPassword,
    OwnerChange,
    Refused,
    SetStatus,
    Snapshot,
    parse_write,
    read,
    report,
)
from chargepin.core.policy import PinMode
from chargepin.core.profiles import ProfileName
from chargepin.core.tickets import Action

SNAPSHOT = Snapshot(
    pin_enabled=True,
    pin_class=PinMode.OPTIONAL,
    profile=ProfileName.HARDENED,
    epoch=12,
    failed_attempts=3,
    locked_until=1767225600.0,
    bonded_phones=("AA:BB:CC:DD:EE:01", "AA:BB:CC:DD:EE:02"),
    identity="CP-0001",
    security_profile=2,
)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Enabled", "true"),
        ("Mandatory", "false"),
        ("PinClass", "optional"),
        ("Profile", "hardened"),
        ("Epoch", "12"),
        ("FailedAttempts", "3"),
        ("LockedUntil", "2026-01-01T00:00:00.000Z"),
        ("BondedPhones", "AA:BB:CC:DD:EE:01,AA:BB:CC:DD:EE:02"),
    ],
)
def test_reads(name: str, value: str) -> None:
    assert read(SNAPSHOT, "BluetoothPin", name, None) == device_model.Read(
        GetStatus.ACCEPTED, value
    )


def test_write_only_unknown_and_attribute_types() -> None:
    assert read(SNAPSHOT, "BluetoothPin", "Pin", None).status is GetStatus.REJECTED
    assert read(SNAPSHOT, "SecurityCtrlr", "BasicAuthPassword", "Actual").status is (
        GetStatus.REJECTED
    )
    assert read(SNAPSHOT, "BluetoothPin", "Nope", None).status is GetStatus.UNKNOWN_VARIABLE
    assert read(SNAPSHOT, "Nope", "Epoch", None).status is GetStatus.UNKNOWN_COMPONENT
    assert read(SNAPSHOT, "BluetoothPin", "Epoch", "Target").status is (
        GetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE
    )


def test_writes_become_owner_actions_or_refusals() -> None:
    assert parse_write("BluetoothPin", "Enabled", None, "TRUE") == OwnerChange(
        Action.ENABLE_PIN, {}
    )
    assert parse_write("BluetoothPin", "Enabled", None, "false") == OwnerChange(
        Action.DISABLE_PIN, {}
    )
    assert parse_write("BluetoothPin", "Pin", None, "385172") == OwnerChange(
        Action.CHANGE_PIN, {"pin": "385172"}
    )
    weak = parse_write("BluetoothPin", "Pin", None, "111111")
    assert isinstance(weak, Refused) and weak.status is SetStatus.REJECTED
    assert isinstance(parse_write("BluetoothPin", "Pin", None, "12345"), Refused)
    assert isinstance(parse_write("BluetoothPin", "Enabled", None, "yes"), Refused)
    read_only = parse_write("BluetoothPin", "Epoch", None, "1")
    assert isinstance(read_only, Refused) and read_only.reason == "ReadOnly"
    assert parse_write("SecurityCtrlr", "BasicAuthPassword", None, "x" * 20) == NewPassword(
        "x" * 20
    )
    assert isinstance(parse_write("SecurityCtrlr", "BasicAuthPassword", None, "short"), Refused)
    unknown = parse_write("Teapot", "Enabled", None, "true")
    assert isinstance(unknown, Refused) and unknown.status is SetStatus.UNKNOWN_COMPONENT


def test_report_lists_every_variable_and_no_write_only_value() -> None:
    data = report(SNAPSHOT)
    assert len(data) == len(device_model.VARIABLES)
    for item in data:
        [attribute] = item["variable_attribute"]  # type: ignore[misc]
        if attribute["mutability"] == "WriteOnly":
            assert "value" not in attribute
    configuration = report(SNAPSHOT, configuration_only=True)
    names = [item["variable"]["name"] for item in configuration]  # type: ignore[index]
    assert names == ["Enabled", "Pin", "BasicAuthPassword"]


def test_bonded_phones_never_cut_an_address() -> None:
    many = tuple(f"AA:BB:CC:DD:{i // 256:02X}:{i % 256:02X}" for i in range(300))
    snapshot = Snapshot(**{**SNAPSHOT.__dict__, "bonded_phones": many})
    value = read(snapshot, "BluetoothPin", "BondedPhones", None).value
    assert value is not None and len(value) <= device_model.VALUE_MAX
    assert all(len(address) == 17 for address in value.split(","))
