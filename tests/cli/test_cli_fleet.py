"""`chargepin fleet ...` and `chargepin charger init --bundle` on real files, through Typer."""

from __future__ import annotations

import datetime as dt
import inspect
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from chargepin.charger.store import StateStore
from chargepin.core.provisioning import ProvisioningBundle, StickerPayload
from chargepin.fleet import cli as fleet_cli
from chargepin.fleet import pins
from chargepin.fleet.claims import code_matches
from chargepin.fleet.models import Charger
from chargepin.fleet.operations import open_database
from chargepin.fleet.vault import ENV_KEY, Vault, key_id
from tests.helpers.cli import invoke

MANDATORY = ["--model", "Pulsar Max", "--firmware", "6.11.2", "--produced", "2025-09-01"]


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path | str]:
    """A fleet database and vault key file in tmp_path, no environment leaking in."""
    for name in (ENV_KEY, "CHARGEPIN_VAULT_KEY_FILE", "CHARGEPIN_DB_URL"):
        monkeypatch.delenv(name, raising=False)
    return {
        "db": f"sqlite:///{tmp_path / 'fleet.db'}",
        "key": tmp_path / "vault.json",
        "out": tmp_path / "out",
    }


def provision(fleet: dict[str, Path | str], count: int = 2, spec: list[str] = MANDATORY) -> str:
    code, out, err = invoke(
        "fleet", "provision", "--count", str(count), *spec, "--out", str(fleet["out"]),
        "--db", str(fleet["db"]), "--vault-key-file", str(fleet["key"]),
    )  # fmt: skip
    assert code == 0, err
    return out


def rows(fleet: dict[str, Path | str]) -> list[Charger]:
    engine, sessions = open_database(str(fleet["db"]))
    with sessions() as db:
        result = list(db.scalars(select(Charger).order_by(Charger.id)))
    engine.dispose()
    return result


def test_provision_writes_bundles_and_stickers_and_a_summary(fleet: dict[str, Path | str]) -> None:
    out = provision(fleet, count=3)
    assert out.startswith("provisioned 3 Pulsar Max chargers CP00000001..CP00000003")
    assert "PIN mandatory" in out
    files = sorted(p.name for p in Path(fleet["out"]).iterdir())
    assert files == sorted(
        f"CP0000000{n}{ext}" for n in (1, 2, 3) for ext in (".json", ".png", ".svg")
    )
    assert Path(fleet["key"]).exists()  # created on first run
    assert [r.serial for r in rows(fleet)] == ["CP00000001", "CP00000002", "CP00000003"]


def test_provision_refuses_unsupported_firmware_and_writes_nothing(
    fleet: dict[str, Path | str],
) -> None:
    code, _, err = invoke(
        "fleet", "provision", "--count", "2", "--model", "Volt Home", "--firmware", "6.7.16",
        "--produced", "2024-03-15", "--out", str(fleet["out"]), "--db", str(fleet["db"]),
        "--vault-key-file", str(fleet["key"]),
    )  # fmt: skip
    assert code == 2
    assert err.startswith("error: cannot provision Volt Home") and "6.7.17" in err
    assert not Path(fleet["out"]).exists() or not any(Path(fleet["out"]).iterdir())
    assert rows(fleet) == []


def test_bundle_round_trip_the_charger_uses_the_fleets_pin_of_epoch_0(
    fleet: dict[str, Path | str], tmp_path: Path
) -> None:
    provision(fleet, count=2)
    vault = Vault.load_file(Path(fleet["key"]))
    for row in rows(fleet):
        state = tmp_path / f"{row.serial}.db"
        bundle = Path(fleet["out"]) / f"{row.serial}.json"
        code, out, err = invoke("charger", "init", "--state", str(state), "--bundle", str(bundle))
        assert code == 0, err
        assert f"provisioned {row.serial} (Pulsar Max, firmware 6.11.2)" in out
        assert "mandatory, on" in out

        code, out, _ = invoke("charger", "pin", "--state", str(state))
        assert code == 0
        assert out.strip() == pins.active_pin(vault, row).digits
        with StateStore.open(state) as store:
            assert store.secret == pins.charger_secret(vault, row)
            assert store.identity.produced == dt.date(2025, 9, 1)


def test_init_refuses_options_that_contradict_the_bundle(
    fleet: dict[str, Path | str], tmp_path: Path
) -> None:
    provision(fleet, count=1)
    bundle = str(Path(fleet["out"]) / "CP00000001.json")
    state = tmp_path / "c.db"
    same = invoke("charger", "init", "--state", str(state), "--bundle", bundle, *MANDATORY)
    assert same[0] == 0, same[2]
    for extra, fragment in [
        (["--serial", "CP00000002"], "--serial 'CP00000002' contradicts the bundle"),
        (["--firmware", "6.12"], "--firmware '6.12' contradicts"),
        (["--produced", "2025-09-02"], "--produced '2025-09-02' contradicts"),
        (["--secret", "5e" * 32], "--secret (or CHARGEPIN_FACTORY_SECRET) contradicts"),
    ]:
        other = tmp_path / "other.db"
        code, _, err = invoke("charger", "init", "--state", str(other), "--bundle", bundle, *extra)
        assert code == 2
        assert err.startswith("error: ") and fragment in err, err
        assert not other.exists()


def test_init_without_a_bundle_names_the_missing_options(tmp_path: Path) -> None:
    code, _, err = invoke("charger", "init", "--state", str(tmp_path / "c.db"), "--serial", "X1")
    assert code == 2
    assert "missing --model, --firmware, --produced" in err and "--bundle" in err


def test_init_refuses_a_damaged_bundle(tmp_path: Path) -> None:
    bundle = tmp_path / "b.json"
    for text, fragment in [
        ("not json", "not JSON"),
        (json.dumps({"format": 2}), "format 2"),
        (json.dumps({"format": 1, "serial": "CP1"}), "lacks model, firmware, produced, secret"),
    ]:
        bundle.write_text(text)
        code, _, err = invoke(
            "charger", "init", "--state", str(tmp_path / "c.db"), "--bundle", str(bundle)
        )
        assert code == 2 and fragment in err, err
    missing = invoke(
        "charger",
        "init",
        "--state",
        str(tmp_path / "c.db"),
        "--bundle",
        str(tmp_path / "nope.json"),
    )
    assert missing[0] == 2 and "cannot read the provisioning bundle" in missing[2]


def test_bundle_files_hold_the_secret_the_vault_holds(fleet: dict[str, Path | str]) -> None:
    provision(fleet, count=1)
    vault = Vault.load_file(Path(fleet["key"]))
    (row,) = rows(fleet)
    bundle = ProvisioningBundle.from_json((Path(fleet["out"]) / f"{row.serial}.json").read_text())
    assert bundle.secret == pins.charger_secret(vault, row)


def test_sticker_issues_a_new_code_and_prints_the_qr(fleet: dict[str, Path | str]) -> None:
    provision(fleet, count=1)
    (before,) = rows(fleet)

    keys = ("--vault-key-file", str(fleet["key"]))
    code, out, err = invoke("fleet", "sticker", "CP00000001", "--db", str(fleet["db"]), *keys)

    assert code == 0, err
    payload_line = next(line for line in out.splitlines() if line.startswith("CHARGEPIN:"))
    payload = StickerPayload.parse(payload_line)
    assert payload.serial == "CP00000001"
    assert "█" in out or "▀" in out  # segno's terminal QR
    (after,) = rows(fleet)
    vault = Vault.load_file(Path(fleet["key"]))
    assert code_matches(vault, after.claim_code_hash, "CP00000001", payload.claim_code)
    assert after.claim_code_hash != before.claim_code_hash
    assert "earlier stickers no longer work" in out

    code, _, err = invoke("fleet", "sticker", "CP99999999", "--db", str(fleet["db"]), *keys)
    assert code == 2 and "no charger CP99999999" in err
    # The digest is keyed with the service's vault: a sticker made without it could never work.
    missing = ("--vault-key-file", str(Path(fleet["key"]).with_name("missing.json")))
    code, _, err = invoke("fleet", "sticker", "CP00000001", "--db", str(fleet["db"]), *missing)
    assert code != 0 and "no vault key file" in err


def test_rotate_key_reencrypts_every_secret_and_custom_pin(fleet: dict[str, Path | str]) -> None:
    provision(fleet, count=3)
    vault = Vault.load_file(Path(fleet["key"]))
    engine, sessions = open_database(str(fleet["db"]))
    with sessions() as db, db.begin():
        first = db.scalars(select(Charger).order_by(Charger.id)).first()
        assert first is not None
        first.custom_pin_ct = vault.seal(b"482915", pins.custom_pin_context(first.serial))
    engine.dispose()
    before = rows(fleet)
    pins_before = [pins.active_pin(vault, row) for row in before]
    old_id = key_id(vault.current)

    code, out, err = invoke(
        "fleet", "rotate-key", "--db", str(fleet["db"]), "--vault-key-file", str(fleet["key"])
    )

    assert code == 0, err
    assert "re-encrypted 3 secrets and 1 custom PINs" in out
    rotated = Vault.load_file(Path(fleet["key"]))
    assert key_id(rotated.current) != old_id and old_id in rotated.keys
    after = rows(fleet)
    for row in after:
        assert row.secret_ct[1:9] == key_id(rotated.current)
        assert not rotated.needs_rotation(row.secret_ct)
    assert after[0].custom_pin_ct is not None
    assert not rotated.needs_rotation(after[0].custom_pin_ct)
    assert [pins.active_pin(rotated, row) for row in after] == pins_before
    assert [pins.charger_secret(rotated, r) for r in after] == [
        pins.charger_secret(vault, r) for r in before
    ]
    again = invoke(
        "fleet", "rotate-key", "--db", str(fleet["db"]), "--vault-key-file", str(fleet["key"])
    )
    assert "re-encrypted 3 secrets and 1 custom PINs" in again[1]


def test_rotate_key_refuses_a_key_from_the_environment(
    fleet: dict[str, Path | str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_KEY, "ab" * 32)
    code, _, err = invoke("fleet", "rotate-key", "--db", str(fleet["db"]))
    assert code == 2
    assert ENV_KEY in err and "key file" in err


def test_rotate_key_refuses_a_missing_key_file(fleet: dict[str, Path | str]) -> None:
    code, _, err = invoke(
        "fleet", "rotate-key", "--db", str(fleet["db"]), "--vault-key-file", str(fleet["key"])
    )
    assert code == 2 and "no vault key file" in err
    assert not Path(fleet["key"]).exists()


def test_serve_refuses_hosts_off_loopback(fleet: dict[str, Path | str]) -> None:
    for host in ("0.0.0.0", "192.0.2.1", "example.com"):
        code, _, err = invoke("fleet", "serve", "--host", host, "--db", str(fleet["db"]))
        assert code == 2
        assert "loopback only" in err


def test_migrate_brings_the_schema_up_to_date(fleet: dict[str, Path | str]) -> None:
    code, out, err = invoke("fleet", "migrate", "--db", str(fleet["db"]))
    assert code == 0, err
    assert "is up to date" in out
    assert invoke("fleet", "migrate", "--db", str(fleet["db"]))[0] == 0


def test_prune_reports_what_it_deleted(fleet: dict[str, Path | str]) -> None:
    code, out, err = invoke("fleet", "prune", "--db", str(fleet["db"]))
    assert code == 0, err
    assert "pruned 0 from login_throttles, 0 from claim_sources" in out


def test_help_lists_the_fleet_commands() -> None:
    code, out, _ = invoke("fleet", "--help")
    assert code == 0
    for command in ("serve", "migrate", "provision", "sticker", "rotate-key", "prune"):
        assert command in out


def test_status_takes_the_services_own_rate_limit_options() -> None:
    """`fleet status` counts the sources over the rate the services were given: its
    --source-rate and --source-window are theirs (cli.SERVICE_OPTIONS), defaults and bounds
    included, not copies that could drift (issue 12)."""
    shared = {p.name: p for p in fleet_cli.SERVICE_OPTIONS}
    status = inspect.signature(fleet_cli.status).parameters
    for name in ("source_rate", "source_window"):
        assert status[name] == shared[name]
    with pytest.raises(ValueError, match="source_rat"):
        fleet_cli.service_options_named("source_rat")


def test_a_database_that_cannot_be_reached_is_one_line_without_its_password(
    fleet: dict[str, Path | str],
) -> None:
    from chargepin.lab.ports import free_port

    url = f"postgresql+psycopg://fleet:hunter2secret@127.0.0.1:{free_port()}/fleet"
    for command in (["migrate"], ["serve", "--workers", "2", "--port", str(free_port())]):
        code, out, err = invoke("fleet", *command, "--db", url)
        assert code == 2, (out, err)
        assert "cannot open the database postgresql+psycopg://fleet:***@127.0.0.1" in err
        assert "hunter2secret" not in out + err and "Traceback" not in out + err


def test_rotate_key_on_two_hosts_in_two_steps_never_leaves_a_process_without_the_key(
    fleet: dict[str, Path | str], tmp_path: Path
) -> None:
    """Host A makes the key (--no-reseal), the key file is copied to host B, then the rows are
    re-sealed (--reseal-only): a process on B that loaded its key file before opens every row
    after each step (it re-reads its own file), and the flags together are refused."""
    provision(fleet, count=2)
    host_a, host_b = Path(fleet["key"]), tmp_path / "host-b-key.json"
    host_b.write_bytes(host_a.read_bytes())
    host_b.chmod(0o600)
    running_on_b = Vault.load_file(host_b)
    before = [pins.charger_secret(running_on_b, row) for row in rows(fleet)]
    old_id = key_id(running_on_b.current)
    db = ("--db", str(fleet["db"]))

    code, out, err = invoke(
        "fleet", "rotate-key", *db, "--vault-key-file", str(host_a), "--no-reseal"
    )
    assert code == 0, err
    assert "nothing was re-encrypted" in out
    assert all(row.secret_ct[1:9] == old_id for row in rows(fleet))
    assert [pins.charger_secret(running_on_b, row) for row in rows(fleet)] == before

    host_b.write_bytes(host_a.read_bytes())  # the operator's copy to every host
    code, out, err = invoke(
        "fleet", "rotate-key", *db, "--vault-key-file", str(host_b), "--reseal-only"
    )
    assert code == 0, err
    assert "re-encrypted 2 secrets" in out
    new_id = key_id(Vault.load_file(host_a).current)
    assert new_id != old_id and key_id(Vault.load_file(host_b).current) == new_id
    assert all(row.secret_ct[1:9] == new_id for row in rows(fleet))
    assert [pins.charger_secret(running_on_b, row) for row in rows(fleet)] == before

    both = ("--no-reseal", "--reseal-only")
    code, _, err = invoke("fleet", "rotate-key", *db, "--vault-key-file", str(host_a), *both)
    assert code == 2 and "would do nothing" in err
