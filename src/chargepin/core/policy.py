"""Whether a charger's PIN is mandatory, optional or unsupported, from firmware and model.

The one copy of the vendor's published rules (PRODUCT.md, "When the PIN applies"): firmware
6.11 or higher makes the PIN mandatory; Pulsar Max and Pulsar Pro produced from 2025-08-01 have
it mandatory whatever the firmware; other chargers from firmware 6.7.17 have it optional (off
until the owner enables it); older firmware does not support it.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from enum import StrEnum

from chargepin.core.errors import InvalidVersion

_MAX_COMPONENTS = 4
MAX_COMPONENT_DIGITS = 6
"""Digits of one version component. With four components a version's text is at most 27
characters, so it fits the fleet's String(32) columns; and no component ever reaches Python's
4,300-digit limit for int() (an X-App-Version of 4,301 digits was a 500, issue 9)."""
_VERSION_RE = re.compile(
    rf"[0-9]{{1,{MAX_COMPONENT_DIGITS}}}(?:\.[0-9]{{1,{MAX_COMPONENT_DIGITS}}})*", re.ASCII
)
_SHOWN = 40  # characters of a rejected version quoted back in the error


@dataclass(frozen=True, eq=False)
class FirmwareVersion:
    """A dotted decimal firmware version, ordered numerically per component.

    Trailing zero components do not count (6.11 == 6.11.0), because the vendor writes the same
    release both ways; 6.7.17 < 6.11.0 because 7 < 11, not because of string order.
    """

    parts: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.parts, tuple) or not 1 <= len(self.parts) <= _MAX_COMPONENTS:
            raise InvalidVersion(
                f"firmware version must have 1 to {_MAX_COMPONENTS} components, "
                f"got {self.parts!r}; write it like 6.11 or 6.7.17"
            )
        for part in self.parts:
            if (
                isinstance(part, bool)
                or not isinstance(part, int)
                or not 0 <= part < 10**MAX_COMPONENT_DIGITS
            ):
                raise InvalidVersion(
                    f"firmware version components must be integers of 0 to "
                    f"{MAX_COMPONENT_DIGITS} digits, got {self.parts!r}; write it like 6.11 or "
                    "6.7.17"
                )

    @classmethod
    def parse(cls, text: str) -> FirmwareVersion:
        """Parse "6.11" or "6.7.17": 1 to 4 dot-separated decimal numbers of at most 6 digits."""
        if not isinstance(text, str):
            raise InvalidVersion(
                f"firmware version must be text like 6.11, got {type(text).__name__}"
            )
        stripped = text.strip()
        if len(stripped) > _MAX_COMPONENTS * (MAX_COMPONENT_DIGITS + 1) or not (
            _VERSION_RE.fullmatch(stripped)
        ):
            shown = (
                repr(text) if len(text) <= _SHOWN else f"{text[:_SHOWN]!r}... ({len(text)} chars)"
            )
            raise InvalidVersion(
                f"firmware version must be 1 to {_MAX_COMPONENTS} dot-separated numbers of up to "
                f"{MAX_COMPONENT_DIGITS} digits, like 6.11 or 6.7.17, got {shown}"
            )
        return cls(tuple(int(part) for part in stripped.split(".")))

    @property
    def _key(self) -> tuple[int, ...]:
        """The parts without trailing zeros: the value that equality and order compare."""
        parts = self.parts
        while len(parts) > 1 and parts[-1] == 0:
            parts = parts[:-1]
        return parts

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FirmwareVersion):
            return NotImplemented
        return self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, FirmwareVersion):
            return NotImplemented
        return self._key < other._key

    def __le__(self, other: object) -> bool:
        if not isinstance(other, FirmwareVersion):
            return NotImplemented
        return self._key <= other._key

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, FirmwareVersion):
            return NotImplemented
        return self._key > other._key

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, FirmwareVersion):
            return NotImplemented
        return self._key >= other._key

    def __str__(self) -> str:
        return ".".join(str(part) for part in self.parts)


class PinMode(StrEnum):
    """How the PIN applies to a charger."""

    MANDATORY = "mandatory"
    OPTIONAL = "optional"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class PinPolicy:
    """What the owner may do with the PIN of one charger, and the sentence that says why."""

    mode: PinMode
    changeable: bool
    can_disable: bool
    reason: str


MANDATORY_FIRMWARE = FirmwareVersion((6, 11))
"""From this firmware on the PIN is always on and the owner may change it."""

OPTIONAL_FIRMWARE = FirmwareVersion((6, 7, 17))
"""From this firmware on the PIN is supported (off until the owner enables it)."""

OP_FIRMWARE = FirmwareVersion((6, 12))
"""From this firmware on the charger knows a ticket's `op` and applies each fleet command once
(core/applied_ops.py). Older firmware refuses a ticket with an argument it does not know
(`bad_args`), so the fleet seals their tickets without it (docs/DECISIONS.md, "Exactly once")."""


def knows_op(firmware: FirmwareVersion) -> bool:
    """Whether a charger on `firmware` takes the `op` ticket argument (OP_FIRMWARE or later)."""
    if not isinstance(firmware, FirmwareVersion):
        raise InvalidVersion(
            f"knows_op needs a FirmwareVersion, got {type(firmware).__name__}; "
            "parse it where it enters with FirmwareVersion.parse"
        )
    return firmware >= OP_FIRMWARE


MANDATORY_MODELS = frozenset({"Pulsar Max", "Pulsar Pro"})
"""Models with a mandatory PIN when produced on or after MANDATORY_MODELS_FROM."""

MANDATORY_MODELS_FROM = datetime.date(2025, 8, 1)

_MANDATORY_MODEL_KEYS = {" ".join(model.casefold().split()): model for model in MANDATORY_MODELS}


def _mandatory_model(model: str) -> str | None:
    """The canonical name of `model` if it is a mandatory model, compared case-insensitively."""
    return _MANDATORY_MODEL_KEYS.get(" ".join(model.casefold().split()))


def pin_policy(model: str, firmware: FirmwareVersion, produced: datetime.date) -> PinPolicy:
    """The PIN policy of a charger, from PRODUCT.md "When the PIN applies".

    The firmware is parsed once where it enters (a command's option, a bundle, a database
    column), never here: a caller cannot hand over text that was never checked.
    """
    if not isinstance(firmware, FirmwareVersion):
        raise InvalidVersion(
            f"pin_policy needs a FirmwareVersion, got {type(firmware).__name__}; "
            "parse it where it enters with FirmwareVersion.parse"
        )
    version = firmware
    produced_on = produced.date() if isinstance(produced, datetime.datetime) else produced
    canonical_model = _mandatory_model(model)
    if version >= MANDATORY_FIRMWARE:
        return _mandatory(f"firmware {version} is {MANDATORY_FIRMWARE} or higher: PIN is mandatory")
    if canonical_model is not None and produced_on >= MANDATORY_MODELS_FROM:
        return _mandatory(
            f"{canonical_model} produced on or after {MANDATORY_MODELS_FROM.isoformat()}: "
            "PIN is mandatory"
        )
    if version >= OPTIONAL_FIRMWARE:
        return PinPolicy(
            mode=PinMode.OPTIONAL,
            changeable=False,
            can_disable=True,
            reason=(
                f"firmware {version} is {OPTIONAL_FIRMWARE} or higher: PIN is optional, "
                "off until the owner enables it; update to "
                f"{MANDATORY_FIRMWARE} or higher to change it"
            ),
        )
    return PinPolicy(
        mode=PinMode.UNSUPPORTED,
        changeable=False,
        can_disable=False,
        reason=(
            f"firmware {version} does not support a PIN; "
            f"update the charger to {OPTIONAL_FIRMWARE} or higher"
        ),
    )


def offers_pin_setup(
    policy: PinPolicy,
    *,
    pin_enabled: bool,
    is_owner: bool,
    enabling: bool = False,
    dismissed: bool = False,
) -> bool:
    """Whether the app offers the pop-up to set up the passcode (PRODUCT.md, "Enabling the PIN").

    Only on an optional-PIN charger (a mandatory one always has it on, an unsupported one cannot
    have it) whose PIN is off, only to its owner (an invited user cannot enable it: the
    `enable_pin` ticket is the owner's), not while an `enable_pin` the owner asked for is still
    on its way to the charger (`enabling`: the app shows that command's state instead), and not
    once the owner answered "Not now" (`dismissed`: how long that lasts is the app's, e.g. the
    session). The one copy of the rule: the fleet-served pages and radio mode both ask it.
    """
    return (
        policy.mode is PinMode.OPTIONAL
        and not pin_enabled
        and is_owner
        and not enabling
        and not dismissed
    )


def _mandatory(reason: str) -> PinPolicy:
    """A mandatory policy: always on, changeable, never disabled."""
    return PinPolicy(mode=PinMode.MANDATORY, changeable=True, can_disable=False, reason=reason)
