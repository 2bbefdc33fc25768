"""The whole product as separate processes: factory, fleet service (uvicorn on loopback),
virtual radio, charger daemon from its bundle, and the app's commands (`chargepin phone ...`).
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from chargepin.lab.ports import free_port
from tests.helpers.fleet_settings import SERVE_HASHING
from tests.helpers.processes import Bench

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery"


def wait_listening(port: int, timeout: float = 15.0) -> None:
    """Until something accepts TCP connections on 127.0.0.1:`port` (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)  # polling a port, not waiting for time: bounded by the deadline
    pytest.fail(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def test_factory_to_commissioning_to_pin_change_across_processes(bench: Bench) -> None:
    directory = bench.directory
    db = f"sqlite:///{directory / 'fleet.db'}"
    keys = str(directory / "vault-key.json")
    out = directory / "factory"
    made = bench.run(
        "fleet",
        "provision",
        "--count",
        "1",
        "--model",
        "Pulsar Max",
        "--firmware",
        "6.11.2",
        "--produced",
        "2025-09-01",
        "--out",
        str(out),
        "--db",
        db,
        "--vault-key-file",
        keys,
    )
    assert made.returncode == 0, made.stderr
    [bundle] = out.glob("*.json")
    serial = json.loads(bundle.read_text())["serial"]
    bench.serial = serial
    sticker = bench.run("fleet", "sticker", serial, "--db", db, "--vault-key-file", keys)
    assert sticker.returncode == 0, sticker.stderr
    payload = next(line for line in sticker.stdout.splitlines() if line.startswith("CHARGEPIN:"))

    port = free_port()
    bench.start(
        "fleet",
        "serve",
        "--db",
        db,
        "--port",
        str(port),
        "--vault-key-file",
        keys,
        *SERVE_HASHING,
        name="fleet",
    )
    wait_listening(port)
    bench.start_radio()
    init = bench.run("charger", "init", "--state", str(bench.state), "--bundle", str(bundle))
    assert init.returncode == 0, init.stderr
    bench.start_charger()

    login = directory / "owner-login.json"
    logged = bench.run(
        "phone",
        "login",
        "--fleet",
        f"http://127.0.0.1:{port}",
        "--email",
        "owner@example.com",
        "--password",
        PASSWORD,
        "--register",
        "--login-file",
        str(login),
    )
    assert logged.returncode == 0, logged.stderr
    claimed = bench.run("phone", "commission", payload, "--login-file", str(login))
    assert claimed.returncode == 0, claimed.stderr
    assert f"PIN {bench.charger_pin()}" in claimed.stdout

    connected = bench.phone("connect", 1, serial, "--login-file", str(login))
    assert connected.returncode == 0, connected.stderr
    assert "paired with the PIN" in connected.stdout
    again = bench.phone("connect", 1, serial, "--login-file", str(login))
    assert "reconnected with the bond" in again.stdout, again.stderr

    changed = bench.phone("change-pin", 1, serial, "--pin", "582913", "--login-file", str(login))
    assert changed.returncode == 0, changed.stderr
    assert bench.charger_pin() == "582913"
    info = bench.run("phone", "charger-info", serial, "--login-file", str(login))
    assert "PIN 582913" in info.stdout, info.stderr

    # A new phone of the owner pairs with the PIN the fleet now shows.
    newcomer = bench.phone("connect", 2, serial, "--login-file", str(login))
    assert "paired with the PIN" in newcomer.stdout, newcomer.stderr

    # Revoking a member who saw the PIN, near the charger: the charger is re-keyed and
    # Charger Info shows the new PIN (issue 9).
    invited = bench.run("phone", "invite", serial, "member@example.com", "--login-file", str(login))
    assert invited.returncode == 0, invited.stderr
    code = invited.stdout.strip().rsplit(" ", 1)[-1]
    member_login = directory / "member-login.json"
    member = bench.run(
        "phone",
        "login",
        "--fleet",
        f"http://127.0.0.1:{port}",
        "--email",
        "member@example.com",
        "--password",
        PASSWORD,
        "--register",
        "--login-file",
        str(member_login),
    )
    assert member.returncode == 0, member.stderr
    accepted = bench.run("phone", "accept", code, "--login-file", str(member_login))
    assert accepted.returncode == 0, accepted.stderr
    seen = bench.run("phone", "charger-info", serial, "--login-file", str(member_login))
    assert f"PIN {bench.charger_pin()}" in seen.stdout, seen.stderr
    members = bench.run("phone", "members", serial, "--login-file", str(login))
    assert members.returncode == 0, members.stderr
    member_id = next(
        line.split()[0] for line in members.stdout.splitlines() if "member@example.com" in line
    )
    before = bench.charger_pin()
    revoked = bench.phone("revoke", 1, serial, member_id, "--login-file", str(login))
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked at the fleet" in revoked.stdout and "re-keyed" in revoked.stdout
    after = bench.charger_pin()
    assert after != before
    shown = bench.run("phone", "charger-info", serial, "--login-file", str(login))
    assert f"PIN {after}" in shown.stdout, shown.stderr
    refused = bench.run("phone", "charger-info", serial, "--login-file", str(member_login))
    assert refused.returncode != 0 and "revoked" in refused.stderr
