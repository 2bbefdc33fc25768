"""The PIN vault: AES-GCM under a keyring with key ids, bound to the record it protects."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from chargepin.fleet.vault import ENV_KEY, Vault, VaultError, key_id, load_vault


def test_seal_and_open_round_trip_bound_to_its_record() -> None:
    vault = Vault.generate()
    sealed = vault.seal(b"042917", "custom-pin:CP-0001")
    assert b"042917" not in sealed
    assert vault.open(sealed, "custom-pin:CP-0001") == b"042917"
    with pytest.raises(VaultError, match="moved from another record"):
        vault.open(sealed, "custom-pin:CP-0002")


@pytest.mark.parametrize("position", [0, 1, 9, 21, -1])
def test_an_altered_ciphertext_never_opens(position: int) -> None:
    vault = Vault.generate()
    sealed = bytearray(vault.seal(b"secret", "x"))
    sealed[position] ^= 0x01
    with pytest.raises(VaultError):
        vault.open(bytes(sealed), "x")


def test_rotation_keeps_old_ciphertexts_readable_and_flags_them() -> None:
    vault = Vault.generate()
    old = vault.seal(b"secret", "x")
    new_id = vault.rotate()
    assert vault.needs_rotation(old)
    new = vault.seal(b"secret", "x")
    assert new[1:9] == new_id and not vault.needs_rotation(new)
    assert vault.open(old, "x") == vault.open(new, "x") == b"secret"


def test_a_ciphertext_from_an_unknown_key_says_which_key(tmp_path: Path) -> None:
    sealed = Vault.generate().seal(b"secret", "x")
    with pytest.raises(VaultError, match=sealed[1:9].hex()):
        Vault.generate().open(sealed, "x")


def test_first_run_creates_a_private_key_file_and_says_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_KEY, raising=False)
    path = tmp_path / "keys" / "vault.json"
    vault, message = load_vault(path)
    assert message is not None and str(path) in message
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again, message = load_vault(path)
    assert message is None
    assert again.open(vault.seal(b"pin", "x"), "x") == b"pin"
    assert json.loads(path.read_text())["current"] == key_id(vault.current).hex()


def test_key_from_the_environment_and_bad_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_KEY, "11" * 32)
    vault, message = load_vault(tmp_path / "unused.json")
    assert message is None and vault.current == bytes([0x11]) * 32
    assert not (tmp_path / "unused.json").exists()
    monkeypatch.setenv(ENV_KEY, "not hex")
    with pytest.raises(VaultError, match="64 hexadecimal characters"):
        load_vault(tmp_path / "unused.json")


def test_a_corrupt_key_file_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_KEY, raising=False)
    path = tmp_path / "vault.json"
    path.write_text("{not json")
    path.chmod(0o600)
    with pytest.raises(VaultError, match="restore it from backup"):
        load_vault(path)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_key_file_others_can_read_is_refused_with_chmod_600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int
) -> None:
    """Issue 9: a group/world-readable key file opens every PIN in any copy of the database."""
    monkeypatch.delenv(ENV_KEY, raising=False)
    path = tmp_path / "vault.json"
    Vault.generate().save(path)
    path.chmod(mode)
    with pytest.raises(VaultError, match=f"mode {mode:04o}.*chmod 600 {path}"):
        load_vault(path)
    path.chmod(0o600)
    assert load_vault(path)[1] is None


def test_a_subkey_is_per_purpose_and_names_its_vault_key() -> None:
    vault = Vault.generate()
    kid, claim_key = vault.subkey("claim-code")
    assert kid == key_id(vault.current)
    assert claim_key not in (vault.current, vault.subkey("other")[1])
    vault.rotate()
    assert vault.subkey("claim-code", kid) == (kid, claim_key)  # older keys still derive
    assert vault.subkey("claim-code")[0] != kid
    with pytest.raises(VaultError, match="does not have"):
        Vault.generate().subkey("claim-code", kid)


def test_a_running_service_follows_a_rotation_of_its_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`fleet rotate-key` re-seals every row under a new key while the service runs: the
    service re-reads its key file on the first unknown key id, and seals with the new key."""
    monkeypatch.delenv(ENV_KEY, raising=False)
    path = tmp_path / "vault.json"
    serving, _ = load_vault(path)
    rotating = Vault.load_file(path)
    new_id = rotating.rotate()
    rotating.save(path)
    resealed = rotating.seal(b"secret", "x")
    assert serving.open(resealed, "x") == b"secret"
    assert serving.seal(b"pin", "y")[1:9] == new_id
    memory = Vault.generate()
    with pytest.raises(VaultError, match="does not have"):
        memory.open(resealed, "x")  # no key file to look in: the error says which key
