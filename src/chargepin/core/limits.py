"""Wire limits: the widths and lengths the formats impose, each defined once.

The charger's store, the phone, the fleet's API bounds and column types and the lab all bound
their inputs by these names (docs/DECISIONS.md, "Where each rule lives"): a limit written a
second time drifts, as the epoch did (2**64-1 in the fleet API, a u32 on the air).
"""

from __future__ import annotations

import math
import re
from typing import Final

from chargepin.core.errors import InvalidConfig

MAX_EPOCH: Final = 2**32 - 1
"""The highest PIN epoch: a u32 in the advertising payload and the info characteristic
(docs/PROTOCOL.md), so the charger cannot show a higher one. The PIN derivation hashes the
epoch as 8 bytes (`epochs.epoch_pin`); that encoding is wider and stays, with its test vectors.
"""

MAX_GENERATION: Final = 2**32 - 1
"""The highest PIN generation (a re-key moves to the next one): a u32 where it is on the air
(the open info's tail, docs/PROTOCOL.md) and in the derivation (`epochs.epoch_pin`)."""


def check_generation(generation: object) -> int:
    """`generation` if it is a whole number 0..MAX_GENERATION, else InvalidConfig."""
    if (
        isinstance(generation, bool)
        or not isinstance(generation, int)
        or not 0 <= generation <= MAX_GENERATION
    ):
        raise InvalidConfig(
            f"generation must be a whole number 0..{MAX_GENERATION}, got {generation!r}; "
            "read it from the charger's info characteristic"
        )
    return generation


CHALLENGE_SIZE: Final = 16
"""Octets of the single-use challenge a ticket is bound to (the Challenge characteristic)."""

MAX_STRING_OCTETS: Final = 255
"""UTF-8 octets of a length-prefixed string on the air and in a ticket's header: one length
octet."""

SERIAL_MAX_LENGTH: Final = 32
"""Characters of a charger serial (the fleet's column is String(SERIAL_MAX_LENGTH))."""

SERIAL_PATTERN: Final = rf"[A-Za-z0-9_-]{{1,{SERIAL_MAX_LENGTH}}}"
SERIAL_RE: Final = re.compile(SERIAL_PATTERN, re.ASCII)
"""A charger serial as printed on its label: 1 to 32 of A-Z, a-z, 0-9, '-' and '_'."""


def serial_problem(serial: object) -> str | None:
    """What is wrong with `serial` as a label's serial (SERIAL_RE), or None when nothing is."""
    if isinstance(serial, str) and SERIAL_RE.fullmatch(serial):
        return None
    return (
        f"serial {serial!r} is not valid; use 1 to {SERIAL_MAX_LENGTH} characters among "
        "A-Z, a-z, 0-9, '-' and '_' as printed on the charger's label"
    )


def require_now(now: object) -> float:
    """`now` as unix seconds, or InvalidConfig: a clock reading must be a finite number.

    NaN compares false with everything: a lock would never hold and a ticket never expire.
    """
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
        raise InvalidConfig(f"now must be finite unix seconds, got {now!r}")
    return now
