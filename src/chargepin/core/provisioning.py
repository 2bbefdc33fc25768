"""What the factory hands out with a charger: its serial, the sticker payload and the bundle.

Two formats leave the factory (docs/PROTOCOL.md, "Sticker and provisioning bundle"):

* the **sticker** on the charger, a QR code whose payload `CHARGEPIN:1:<serial>:<claim code>`
  lets the installer's app claim the charger. It carries the serial and a one-time claim code,
  never the PIN or the factory secret: a sticker is readable by anyone standing next to the
  charger, and the claim code is worthless once the charger has an owner.
* the **provisioning bundle**, a JSON file the end-of-line station loads into the charger
  (`chargepin charger init --bundle FILE`): identity and the 32-byte factory secret the PINs
  are derived from. It exists only between the factory's database and the charger.

Plain values and text in, values out: the fleet service writes them, the charger reads them.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from chargepin.core.errors import InvalidConfig, InvalidSticker
from chargepin.core.keys import require_secret
from chargepin.core.limits import serial_problem
from chargepin.core.policy import FirmwareVersion

STICKER_PREFIX = "CHARGEPIN"
STICKER_FORMAT = 1

CLAIM_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
"""Crockford's base32: no I, L, O or U, so a code read aloud or typed is not misread."""

CLAIM_CODE_LENGTH = 12
"""Characters in a claim code: 12 x 5 = 60 random bits."""

BUNDLE_FORMAT = 1


_FROM_RFC4648 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", CLAIM_ALPHABET)


def new_claim_code() -> str:
    """A fresh one-time claim code: 60 random bits in Crockford base32.

    Encoded with the C base32 codec and translated to Crockford's alphabet: the factory makes
    a million of these per run.
    """
    encoded = base64.b32encode(secrets.token_bytes(8)).decode("ascii")
    return encoded[:CLAIM_CODE_LENGTH].translate(_FROM_RFC4648)


@dataclass(frozen=True)
class StickerPayload:
    """What the QR code on a charger's sticker says: its serial and one-time claim code."""

    serial: str
    claim_code: str = field(repr=False)

    def __post_init__(self) -> None:
        problem = serial_problem(self.serial)
        if problem is not None:
            raise InvalidSticker(f"this is not a chargepin sticker: {problem}")
        code = self.claim_code
        if (
            not isinstance(code, str)
            or len(code) != CLAIM_CODE_LENGTH
            or any(char not in CLAIM_ALPHABET for char in code)
        ):
            raise InvalidSticker(
                f"this is not a chargepin sticker: the claim code must be {CLAIM_CODE_LENGTH} "
                "characters of 0-9 and A-Z without I, L, O, U; scan the sticker again"
            )

    def encode(self) -> str:
        """The QR code's text: `CHARGEPIN:1:<serial>:<claim code>`."""
        return f"{STICKER_PREFIX}:{STICKER_FORMAT}:{self.serial}:{self.claim_code}"

    @classmethod
    def parse(cls, text: str) -> StickerPayload:
        """Read a scanned payload, or InvalidSticker saying what is wrong with it.

        The prefix is matched case-insensitively and surrounding white space is ignored (QR
        scanners differ there); the claim code is upper-cased, since its alphabet has no
        lower-case letters.
        """
        if not isinstance(text, str):
            raise InvalidSticker(f"a sticker payload is text, got {type(text).__name__}")
        if not text.isascii():  # str.upper() would turn look-alikes (ı, ſ) into I and S
            raise InvalidSticker(
                "this sticker text has characters a chargepin QR code never holds; scan the "
                "QR code on the charger's sticker again"
            )
        parts = text.strip().split(":")
        if len(parts) != 4 or parts[0].upper() != STICKER_PREFIX:
            raise InvalidSticker(
                "this is not a chargepin sticker: expected CHARGEPIN:1:<serial>:<claim code>; "
                "scan the QR code on the charger's sticker"
            )
        if parts[1] != str(STICKER_FORMAT):
            raise InvalidSticker(
                f"sticker format {parts[1]!r} is not known to this service (it reads format "
                f"{STICKER_FORMAT}); update the app or contact support"
            )
        return cls(parts[2], parts[3].upper())


@dataclass(frozen=True)
class ProvisioningBundle:
    """What the charger needs from the factory: identity and factory secret (one JSON file).

    `{"format": 1, "serial", "model", "firmware", "produced": "YYYY-MM-DD", "secret": hex}`.
    """

    serial: str
    model: str
    firmware: FirmwareVersion
    produced: datetime.date
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.firmware, FirmwareVersion):
            raise InvalidConfig("provisioning bundle: firmware must be a FirmwareVersion")
        problem = serial_problem(self.serial)
        if problem is not None:
            raise InvalidConfig(f"provisioning bundle: {problem}")
        require_secret(self.secret)

    def to_dict(self) -> dict[str, Any]:
        """The bundle as a JSON object."""
        return {
            "format": BUNDLE_FORMAT,
            "serial": self.serial,
            "model": self.model,
            "firmware": str(self.firmware),
            "produced": self.produced.isoformat(),
            "secret": self.secret.hex(),
        }

    def to_json(self) -> str:
        """The bundle file's text."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ProvisioningBundle:
        """Read a bundle file's text, or InvalidConfig saying what is wrong with it."""
        try:
            data: Any = json.loads(text)
        except (ValueError, RecursionError) as error:  # RecursionError: nesting too deep
            raise InvalidConfig(
                f"provisioning bundle is not JSON ({error}); export it again from the fleet "
                "service (`chargepin fleet provision`)"
            ) from None
        if not isinstance(data, dict):
            raise InvalidConfig("provisioning bundle must be a JSON object")
        if data.get("format") != BUNDLE_FORMAT:
            raise InvalidConfig(
                f"provisioning bundle format {data.get('format')!r} is not known (this version "
                f"reads format {BUNDLE_FORMAT}); update chargepin on the station"
            )
        missing = [
            name
            for name in ("serial", "model", "firmware", "produced", "secret")
            if not isinstance(data.get(name), str)
        ]
        if missing:
            raise InvalidConfig(
                f"provisioning bundle lacks {', '.join(missing)} (text expected); "
                "export it again from the fleet service"
            )
        try:
            firmware = FirmwareVersion.parse(data["firmware"])
            produced = datetime.date.fromisoformat(data["produced"])
            secret = bytes.fromhex(data["secret"])
        except ValueError as error:
            raise InvalidConfig(f"provisioning bundle has a malformed value: {error}") from None
        return cls(data["serial"], data["model"], firmware, produced, secret)
