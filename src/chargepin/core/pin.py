"""A charger PIN: exactly six ASCII digits, the LE Secure Connections passkey.

The passkey of LE Secure Connections passkey entry is a number 000000-999999 (Core spec Vol 3
Part H 2.3.5.6.3); the PIN is that number written with its leading zeros, so `042917` and
`42917` are not the same thing to a user and only the six-digit form is accepted.
"""

from __future__ import annotations

import itertools
import random
import secrets
import unicodedata
from dataclasses import dataclass

from chargepin.core.errors import InvalidPin, WeakPin

PIN_LENGTH = 6
"""Digits in a PIN; the SMP passkey is 0..999999."""

MAX_PASSKEY = 10**PIN_LENGTH - 1

_ASCII_DIGITS = frozenset("0123456789")
_REPEAT_PERIODS = (2, 3)
"""Pattern lengths a PIN may not repeat (period 1, all-same digits, has its own reason)."""


def _format_problem(digits: object) -> str | None:
    """Why `digits` is not six ASCII digits, or None when it is."""
    if not isinstance(digits, str):
        return f"PIN must be a string of {PIN_LENGTH} digits, got {type(digits).__name__}"
    for position, char in enumerate(digits, start=1):
        if char not in _ASCII_DIGITS:
            name = unicodedata.name(char, f"U+{ord(char):04X}")
            return (
                f"PIN must be exactly {PIN_LENGTH} digits 0-9, got {char!r} ({name}) "
                f"at position {position}: {digits!r}"
            )
    if len(digits) != PIN_LENGTH:
        return f"PIN must be exactly {PIN_LENGTH} digits, got {len(digits)}: {digits!r}"
    return None


def _require_format(digits: object) -> None:
    """Raise InvalidPin unless `digits` is six ASCII digits."""
    problem = _format_problem(digits)
    if problem is not None:
        raise InvalidPin(f"{problem}; enter the 6-digit PIN shown in Charger Info")


@dataclass(frozen=True, repr=False)
class Pin:
    """A well-formed PIN; its repr is masked so a PIN never leaks into logs or tracebacks."""

    digits: str

    def __post_init__(self) -> None:
        _require_format(self.digits)

    @classmethod
    def parse(cls, text: str) -> Pin:
        """Parse user input: surrounding whitespace is ignored, nothing else is forgiven.

        Weak PINs are accepted here (the charger's own PIN was valid when it was set); use
        `parse_strong` where a user chooses a new PIN.
        """
        if not isinstance(text, str):
            _require_format(text)
        return cls(text.strip())

    @classmethod
    def parse_strong(cls, text: str) -> Pin:
        """Parse a PIN a user chooses, refusing the weak ones with WeakPin(digits, reason)."""
        pin = cls.parse(text)
        reason = weakness(pin.digits)
        if reason is not None:
            raise WeakPin(pin.digits, reason)
        return pin

    @classmethod
    def from_passkey(cls, passkey: int) -> Pin:
        """The PIN of an SMP passkey (0..999999), zero-padded to six digits."""
        if isinstance(passkey, bool) or not isinstance(passkey, int):
            raise InvalidPin(
                f"passkey must be an integer 0..{MAX_PASSKEY}, got {type(passkey).__name__}"
            )
        if not 0 <= passkey <= MAX_PASSKEY:
            raise InvalidPin(
                f"passkey must be 0..{MAX_PASSKEY}, got {passkey}; "
                "the SMP passkey is at most six decimal digits"
            )
        return cls(f"{passkey:0{PIN_LENGTH}d}")

    @property
    def passkey(self) -> int:
        """The SMP passkey value of this PIN (Core spec Vol 3 Part H 2.3.5.6.3)."""
        return int(self.digits)

    def __str__(self) -> str:
        return self.digits

    def __repr__(self) -> str:
        return "Pin(******)"


def weakness(digits: str) -> str | None:
    """Why a six-digit PIN is too easy to guess, or None when it is not.

    Refused: all-same digits (000000), straight runs up or down with step 1 that do not wrap
    (012345, 987654), and PINs made of a repeated 2- or 3-digit pattern (121212, 123123).
    Together these are 1,100 of the 1,000,000 PINs: the ones people try first.
    Raises InvalidPin when `digits` is not six ASCII digits.
    """
    _require_format(digits)
    values = [int(char) for char in digits]
    if len(set(values)) == 1:
        return "all digits are the same"
    steps = {later - earlier for earlier, later in itertools.pairwise(values)}
    if steps == {1}:
        return "the digits count straight up"
    if steps == {-1}:
        return "the digits count straight down"
    for period in _REPEAT_PERIODS:
        if digits == digits[:period] * (PIN_LENGTH // period):
            return f"it repeats the {period}-digit pattern {digits[:period]}"
    return None


def generate_pin(rng: secrets.SystemRandom | random.Random | None = None) -> Pin:
    """A uniformly random PIN among the ones `weakness` accepts.

    Uses the operating system's CSPRNG unless a seeded `random.Random` is passed (tests, lab).
    """
    source = rng if rng is not None else secrets.SystemRandom()
    while True:
        candidate = f"{source.randrange(MAX_PASSKEY + 1):0{PIN_LENGTH}d}"
        if weakness(candidate) is None:
            return Pin(candidate)
