"""The factory: charger rows, vaulted secrets, claim codes, bundles and stickers."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from chargepin.core.epochs import epoch_pin
from chargepin.core.errors import InvalidConfig, InvalidSticker, ProvisioningRefused
from chargepin.core.policy import FirmwareVersion
from chargepin.core.provisioning import (
    CLAIM_ALPHABET,
    CLAIM_CODE_LENGTH,
    ProvisioningBundle,
    StickerPayload,
)
from chargepin.fleet import factory, pins
from chargepin.fleet.claims import code_matches
from chargepin.fleet.models import Charger
from tests.helpers.fleet_factory import MANDATORY, OPTIONAL, UNSUPPORTED, provision
from tests.helpers.fleet_records import charger_row


def test_provision_makes_rows_with_vaulted_secrets_and_hashed_claim_codes(
    client: TestClient,
) -> None:
    made = provision(client, MANDATORY, count=3)

    assert [m.serial for m in made] == ["CP00000001", "CP00000002", "CP00000003"]
    assert len({m.secret for m in made}) == 3
    vault = client.app.state.fleet.vault  # type: ignore[attr-defined]
    for item in made:
        row = charger_row(client, item.serial)
        assert pins.charger_secret(vault, row) == item.secret
        assert item.secret not in row.secret_ct
        assert code_matches(vault, row.claim_code_hash, item.serial, item.claim_code)
        assert len(item.claim_code) == CLAIM_CODE_LENGTH
        assert set(item.claim_code) <= set(CLAIM_ALPHABET)
        assert (row.pin_enabled, row.epoch, row.claimed_at) == (True, 0, None)
        assert (row.model, row.firmware, row.produced) == (
            MANDATORY.model,
            FirmwareVersion.parse(MANDATORY.firmware),
            MANDATORY.produced,
        )


def test_serials_continue_after_earlier_runs_and_prefixes_are_separate(
    client: TestClient,
) -> None:
    provision(client, count=2)
    assert [m.serial for m in provision(client, count=2)] == ["CP00000003", "CP00000004"]
    assert provision(client, prefix="PX")[0].serial == "PX00000001"


def test_optional_class_leaves_the_factory_with_the_pin_off(client: TestClient) -> None:
    (made,) = provision(client, OPTIONAL)
    assert made.policy.mode == "optional"
    assert charger_row(client, made.serial).pin_enabled is False


def test_unsupported_firmware_is_refused_with_the_policys_reason(client: TestClient) -> None:
    with pytest.raises(ProvisioningRefused, match=r"update the charger to 6\.7\.17"):
        provision(client, UNSUPPORTED, count=2)
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    with fleet.sessions() as db:
        assert db.scalar(select(func.count()).select_from(Charger)) == 0


@pytest.mark.parametrize(
    ("count", "prefix", "fragment"),
    [(0, "CP", "count"), (1, "cp", "prefix"), (1, "C-P", "prefix"), (1, "TOOLONGPX", "prefix")],
)
def test_bad_runs_are_refused(client: TestClient, count: int, prefix: str, fragment: str) -> None:
    with pytest.raises(InvalidConfig, match=fragment):
        provision(client, count=count, prefix=prefix)


def test_sticker_carries_the_serial_and_claim_code_only(client: TestClient) -> None:
    for made in provision(client, count=20):
        payload = made.sticker.encode()
        assert payload == f"CHARGEPIN:1:{made.serial}:{made.claim_code}"
        assert made.secret.hex() not in payload.lower()
        assert epoch_pin(made.secret, made.serial, 0).digits not in payload.split(":")
        assert StickerPayload.parse(payload) == made.sticker
        assert made.claim_code not in repr(made) and made.secret.hex() not in repr(made)


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ("hello", "expected CHARGEPIN:1:<serial>:<claim code>"),
        ("CHARGEPIN:2:CP00000001:0123456789AB", "format '2'"),
        ("CHARGEPIN:1:CP 1:0123456789AB", "serial"),
        ("CHARGEPIN:1:CP00000001:0123", "claim code"),
        ("CHARGEPIN:1:CP00000001:0123456789AU", "claim code"),
    ],
)
def test_malformed_sticker_payloads_say_what_is_wrong(payload: str, fragment: str) -> None:
    with pytest.raises(InvalidSticker, match=fragment.replace("(", r"\(")):
        StickerPayload.parse(payload)


def test_scanned_payloads_are_read_leniently_where_scanners_differ() -> None:
    parsed = StickerPayload.parse("  chargepin:1:CP00000001:0123456789ab\n")
    assert parsed == StickerPayload("CP00000001", "0123456789AB")


def test_bundles_and_stickers_are_written_per_charger(client: TestClient, tmp_path: Path) -> None:
    made = provision(client, count=2)
    written = list(factory.write_outputs(made, tmp_path / "out"))

    assert sorted(p.name for p in written) == sorted(
        f"{m.serial}{ext}" for m in made for ext in (".json", ".svg", ".png")
    )
    for item in made:
        bundle_path = tmp_path / "out" / f"{item.serial}.json"
        assert ProvisioningBundle.from_json(bundle_path.read_text()) == item.bundle
        assert stat.S_IMODE(bundle_path.stat().st_mode) == 0o600
        assert (tmp_path / "out" / f"{item.serial}.png").read_bytes()[:4] == b"\x89PNG"
        assert "<svg" in (tmp_path / "out" / f"{item.serial}.svg").read_text()


def test_a_reissued_claim_code_replaces_the_old_one(client: TestClient) -> None:
    (made,) = provision(client)
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    with fleet.sessions() as db, db.begin():
        payload = factory.reissue_claim_code(db, fleet.vault, made.serial)
    assert payload.claim_code != made.claim_code
    stored = charger_row(client, made.serial).claim_code_hash
    assert code_matches(fleet.vault, stored, made.serial, payload.claim_code)
    assert not code_matches(fleet.vault, stored, made.serial, made.claim_code)
