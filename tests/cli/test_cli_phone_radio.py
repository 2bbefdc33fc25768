"""`chargepin phone ...` and `chargepin radio` refusals that need no radio: bad input costs nothing.

A typo in a PIN must never reach a charger (a failed attempt counts towards the lockout and, in
the hardened profile, moves the PIN epoch), so it is refused before the radio is opened; the
flows that do reach a charger are covered across processes in tests/scenarios/test_multiprocess.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.helpers.cli import invoke

# Nothing listens on the discard port: a command that tried the radio would fail differently.
NOWHERE = "tcp-client:127.0.0.1:9"


def error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.mark.parametrize(("pin", "fragment"), [("12345", "6 digits"), ("12a456", "'a'")])
@pytest.mark.parametrize("command", ["pair", "status", "start", "stop"])
def test_a_malformed_pin_is_refused_before_the_radio_is_opened(
    tmp_path: Path, command: str, pin: str, fragment: str
) -> None:
    bonds = tmp_path / "bonds.db"
    code, out, err = invoke(
        "phone", command, "--transport", NOWHERE, "--bonds", str(bonds), "--pin", pin, "CP-1"
    )

    assert code == 2
    assert out == ""
    assert fragment in error_line(err)
    assert not bonds.exists()


def test_an_unreachable_radio_is_a_one_line_error(tmp_path: Path) -> None:
    code, _, err = invoke(
        "phone", "info", "--transport", NOWHERE, "--bonds", str(tmp_path / "b.db"), "CP-1"
    )

    assert code == 2
    assert "could not open transport" in error_line(err)


@pytest.mark.parametrize(
    "transport", ["tcp-client:192.0.2.7:9001", "ws-client:example.com:80", "9001"]
)
def test_network_transports_off_loopback_are_refused(tmp_path: Path, transport: str) -> None:
    code, _, err = invoke(
        "phone", "scan", "--transport", transport, "--bonds", str(tmp_path / "b.db")
    )

    assert code == 2
    error_line(err)


@pytest.mark.parametrize("amps", ["5", "33"])
def test_limit_outside_the_evse_range_is_bad_usage(tmp_path: Path, amps: str) -> None:
    code, _, err = invoke(
        "phone",
        "limit",
        "--transport",
        NOWHERE,
        "--bonds",
        str(tmp_path / "b.db"),
        "--amps",
        amps,
        "CP-1",
    )

    assert code == 2
    assert "--amps" in err


@pytest.mark.parametrize("ports", ["9001,x", "0", "9001,70000", "9001,9001"])
def test_radio_refuses_bad_port_lists(ports: str) -> None:
    code, out, err = invoke("radio", "--ports", ports)

    assert code == 2
    assert "READY" not in out
    assert "--ports" in err


def test_radio_on_a_port_in_use_is_a_one_line_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = invoke("radio", "--ports", str(port))

    assert code == 2
    assert "READY" not in out
    assert "pick free ports" in error_line(err)
