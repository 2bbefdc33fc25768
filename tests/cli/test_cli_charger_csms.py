"""`chargepin charger csms-password` and `charger run --csms ...` refusals, on real state files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chargepin.charger.store import StateStore
from chargepin.core.csms_auth import csms_password
from tests.cli.test_cli_charger import SERIAL, assert_one_line_error, init
from tests.helpers.cli import invoke


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "charger.db"
    assert init(path)[0] == 0
    return path


def test_csms_password_prints_the_derived_then_the_rotated_password(state: Path) -> None:
    code, out, err = invoke("charger", "csms-password", "--state", str(state))
    assert code == 0, err
    with StateStore.open(state) as store:
        assert out.strip() == csms_password(store.secret, SERIAL)
        assert len(out.strip()) == 40
        store.set_csms_password("rotated-by-a-csms-1234")
    assert invoke("charger", "csms-password", "--state", str(state))[1].strip() == (
        "rotated-by-a-csms-1234"
    )
    info = json.loads(invoke("charger", "info", "--state", str(state), "--json")[1])
    assert info["ocpp"]["password"] == "set by a CSMS"
    assert "rotated-by-a-csms-1234" not in json.dumps(info)


@pytest.mark.parametrize(
    ("url", "extra", "fragments"),
    [
        ("ws://192.0.2.10/ocpp/", (), ("in clear", "--insecure-csms")),
        ("http://127.0.0.1/ocpp/", (), ("must start with wss://",)),
        ("ws://127.0.0.1/ocpp/SOMEONE-ELSE", (), ("must end with the station identity",)),
        ("wss://user:pw@csms.example/ocpp/", (), ("must not carry credentials",)),
        ("wss://csms.example/ocpp/", ("--csms-ca", "/nonexistent/ca.pem"), ("no such file",)),
        ("ws://127.0.0.1/ocpp/", ("--csms-ca", __file__), ("for a wss:// CSMS",)),
    ],
)
def test_run_refuses_a_csms_it_should_not_use_before_touching_the_radio(
    state: Path, url: str, extra: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    # The transport does not exist: the options are refused before it is opened.
    code, _, err = invoke(
        "charger",
        "run",
        "--state",
        str(state),
        "--transport",
        "tcp-client:127.0.0.1:1",
        "--csms",
        url,
        *extra,
    )
    assert code != 0
    assert_one_line_error(err, *fragments)
