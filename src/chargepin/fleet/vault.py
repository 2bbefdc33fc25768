"""The PIN vault: charger secrets and custom PINs encrypted at rest (AES-256-GCM).

Keys come from CHARGEPIN_VAULT_KEY (64 hex characters) or a key file (JSON keyring); the
embedded default creates a key file on first run and says where. Every ciphertext names the key
it was made with, so keys can rotate (`chargepin fleet rotate-key`) without a flag day, and is
bound to what it protects (the associated data names the row), so a ciphertext copied to another
charger's row does not decrypt.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chargepin.core.errors import ChargepinError

FORMAT = 1
KEY_ID_SIZE = 8
NONCE_SIZE = 12
ENV_KEY = "CHARGEPIN_VAULT_KEY"
ENV_KEY_FILE = "CHARGEPIN_VAULT_KEY_FILE"


_RELOAD = threading.Lock()


class VaultError(ChargepinError):
    """A vault key or ciphertext problem; the message says which key and what to do."""


def key_id(key: bytes) -> bytes:
    """Public identifier of a key: the first 8 bytes of its SHA-256 (reveals nothing useful)."""
    return hashlib.sha256(b"chargepin/vault-key-id/" + key).digest()[:KEY_ID_SIZE]


def _parse_key(text: str, where: str) -> bytes:
    cleaned = text.strip()
    try:
        key = bytes.fromhex(cleaned)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise VaultError(
            f"vault key from {where} must be 64 hexadecimal characters (32 bytes); "
            'generate one with: python -c "import secrets; print(secrets.token_hex(32))"'
        )
    return key


@dataclass
class Vault:
    """A keyring: one current key that encrypts, every known key decrypts."""

    current: bytes
    keys: dict[bytes, bytes] = field(default_factory=dict)
    source: str = "memory"
    _subkeys: dict[tuple[str, bytes], bytes] = field(default_factory=dict, repr=False)
    _ciphers: dict[bytes, AESGCM] = field(default_factory=dict, repr=False)
    """One AES-GCM object per key id, made once: a key id names one key for good (its hash),
    and making the object was most of an `open` (docs/PERFORMANCE.md)."""

    def __post_init__(self) -> None:
        self.keys.setdefault(key_id(self.current), self.current)

    @classmethod
    def generate(cls) -> Vault:
        return cls(secrets.token_bytes(32))

    # ------------------------------------------------------------------ sealing

    def seal(self, plaintext: bytes, context: str) -> bytes:
        """`plaintext` encrypted under the current key, bound to `context` (e.g. the row)."""
        nonce = secrets.token_bytes(NONCE_SIZE)
        kid = key_id(self.current)
        header = bytes([FORMAT]) + kid
        body = AESGCM(self.current).encrypt(nonce, plaintext, header + context.encode())
        return header + nonce + body

    def open(self, ciphertext: bytes, context: str) -> bytes:
        """The plaintext, or VaultError naming the problem (unknown key, altered, wrong row)."""
        if len(ciphertext) < 1 + KEY_ID_SIZE + NONCE_SIZE + 16 or ciphertext[0] != FORMAT:
            raise VaultError("vault ciphertext is malformed; restore the database from backup")
        kid = ciphertext[1 : 1 + KEY_ID_SIZE]
        cipher = self._ciphers.get(kid)
        if cipher is None:
            key = self.keys.get(kid) or self._reload_for(kid)
            if key is None:
                raise VaultError(
                    f"vault ciphertext was made with key {kid.hex()}, which this service does "
                    "not have; add that key to the key file (keys are never deleted by rotation)"
                )
            cipher = self._ciphers[kid] = AESGCM(key)
        header = ciphertext[: 1 + KEY_ID_SIZE]
        nonce = ciphertext[1 + KEY_ID_SIZE : 1 + KEY_ID_SIZE + NONCE_SIZE]
        try:
            return cipher.decrypt(
                nonce, ciphertext[1 + KEY_ID_SIZE + NONCE_SIZE :], header + context.encode()
            )
        except InvalidTag as error:
            raise VaultError(
                f"vault ciphertext for {context} does not authenticate (altered, or moved from "
                "another record); restore the database from backup"
            ) from error

    def _reload_for(self, kid: bytes) -> bytes | None:
        """A key this keyring has not seen: `chargepin fleet rotate-key` may have added it to
        our key file while we run. Re-read the file once and adopt its keys and current key."""
        path = Path(self.source)
        if self.source in ("memory", ENV_KEY) or not path.is_file():
            return None
        with _RELOAD:
            if kid not in self.keys:
                fresh = Vault.load_file(path)
                self.keys.update(fresh.keys)
                self.current = fresh.current
        return self.keys.get(kid)

    def subkey(self, purpose: str, kid: bytes | None = None) -> tuple[bytes, bytes]:
        """(key id, key) of a key for one `purpose` derived from vault key `kid` (the current
        one by default): HMAC-SHA256(vault key, label), so a key for hashing claim codes is
        never the key that encrypts. Rotation adds keys and deletes none, so whatever was
        keyed with an older vault key keeps verifying (it names that key's id)."""
        kid = key_id(self.current) if kid is None else kid
        cached = self._subkeys.get((purpose, kid))
        if cached is not None:
            return kid, cached
        key = self.keys.get(kid) or self._reload_for(kid)
        if key is None:
            raise VaultError(
                f"a {purpose} record was keyed with vault key {kid.hex()}, which this service "
                "does not have; add that key to the key file (keys are never deleted by rotation)"
            )
        derived = hmac.new(key, b"chargepin/vault-subkey/" + purpose.encode(), "sha256").digest()
        self._subkeys[(purpose, kid)] = derived
        return kid, derived

    def sealed_with(self, ciphertext: bytes) -> str | None:
        """The id (hex) of the key `ciphertext` was sealed with when this keyring lacks it (after
        re-reading its key file once), else None: whether this vault belongs to a database."""
        kid = ciphertext[1 : 1 + KEY_ID_SIZE]
        if kid in self.keys or self._reload_for(kid) is not None:
            return None
        return kid.hex()

    def needs_rotation(self, ciphertext: bytes) -> bool:
        return ciphertext[1 : 1 + KEY_ID_SIZE] != key_id(self.current)

    # ------------------------------------------------------------------ key files

    def to_json(self) -> str:
        return json.dumps(
            {
                "current": key_id(self.current).hex(),
                "keys": {kid.hex(): key.hex() for kid, key in self.keys.items()},
            },
            indent=2,
        )

    def save(self, path: Path) -> None:
        """Write the keyring to `path` (mode 0600, atomically)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        self.source = str(path)

    @classmethod
    def load_file(cls, path: Path) -> Vault:
        """The keyring in `path`, refused when anyone but its owner may read it."""
        _require_private(path)
        try:
            data = json.loads(path.read_text())
            keys = {
                bytes.fromhex(kid): _parse_key(key, str(path)) for kid, key in data["keys"].items()
            }
            current = keys[bytes.fromhex(data["current"])]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise VaultError(
                f"vault key file {path} is unreadable or malformed ({error}); restore it from "
                "backup: without it the PINs and charger secrets cannot be decrypted"
            ) from error
        for kid, key in keys.items():
            if key_id(key) != kid:
                raise VaultError(f"vault key file {path}: key {kid.hex()} does not match its id")
        return cls(current, keys, source=str(path))

    def rotate(self) -> bytes:
        """Make a new current key (old keys stay for decryption); returns its id."""
        self.current = secrets.token_bytes(32)
        self.keys[key_id(self.current)] = self.current
        return key_id(self.current)


def _require_private(path: Path) -> None:
    """VaultError when the key file is readable or writable by group or others.

    Whoever reads it can open every charger secret and PIN in a copy of the database, so it is
    refused like ssh refuses a private key with loose permissions, saying how to fix it.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as error:
        raise VaultError(
            f"vault key file {path} is unreadable ({error}); restore it from backup: without "
            "it the PINs and charger secrets cannot be decrypted"
        ) from error
    if mode & 0o077:
        raise VaultError(
            f"vault key file {path} is accessible by group or others (mode {mode:04o}); "
            f"it must be private to the service's user: chmod 600 {path}"
        )


def load_vault(key_file: Path) -> tuple[Vault, str | None]:
    """The vault from the environment or `key_file`, creating the file on first run.

    Returns the vault and, when a new key file was created, a message saying where it is.
    """
    env = os.environ.get(ENV_KEY)
    if env:
        return Vault(_parse_key(env, ENV_KEY), source=ENV_KEY), None
    path = Path(os.environ.get(ENV_KEY_FILE) or key_file)
    if path.exists():
        return Vault.load_file(path), None
    vault = Vault.generate()
    vault.save(path)
    return vault, (
        f"created a new vault key file at {path}; back it up: without it the PINs and charger "
        f"secrets in the database cannot be decrypted (or set {ENV_KEY})"
    )
