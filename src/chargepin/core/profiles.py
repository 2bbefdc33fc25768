"""The security profiles: one name each, and the one table of what each name means.

DESIGN.md, "Lockout" and "PIN epochs". `hardened` is what the factory ships: a lock that keeps
out new pairings only and grows, and a fresh PIN epoch after every failed attempt. `classic` is
the vendor's original behaviour, kept so the lab can measure what hardening buys. Code asks a
profile's fields (`rotate_on_failure`, `lockout.scope`), never its name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from chargepin.core.errors import InvalidConfig
from chargepin.core.lockout import LockoutConfig, LockoutScope


class ProfileName(StrEnum):
    """The name a profile is provisioned, stored and chosen by (`--profile`)."""

    CLASSIC = "classic"
    HARDENED = "hardened"


DEFAULT_PROFILE = ProfileName.HARDENED
"""What the factory provisions unless told otherwise."""


@dataclass(frozen=True)
class SecurityProfile:
    """A named security profile: the lockout rules and whether failures rotate the PIN."""

    name: ProfileName
    lockout: LockoutConfig
    rotate_on_failure: bool

    def with_lockout(self, config: LockoutConfig) -> SecurityProfile:
        """This profile with the factory's own lockout numbers (`charger init --lockout-*`)."""
        return replace(self, lockout=config)


PROFILES: Mapping[ProfileName, SecurityProfile] = MappingProxyType(
    {
        ProfileName.HARDENED: SecurityProfile(
            ProfileName.HARDENED,
            # LockoutConfig's defaults (DESIGN.md): 5 / 60 s -> 300 s for new pairings only,
            # doubling within 24 h up to 24 h.
            LockoutConfig(),
            rotate_on_failure=True,
        ),
        ProfileName.CLASSIC: SecurityProfile(
            ProfileName.CLASSIC,
            # The vendor's: 5 / 60 s lock everything for 300 s, no growth; the PIN never moves.
            LockoutConfig(
                failures=5, window=60.0, duration=300.0, scope=LockoutScope.ALL, growth=False
            ),
            rotate_on_failure=False,
        ),
    }
)


def profile_name(name: object) -> ProfileName:
    """`name` as a ProfileName, or InvalidConfig listing the profiles."""
    try:
        return ProfileName(name if isinstance(name, str) else repr(name))
    except ValueError:
        choices = ", ".join(p.value for p in ProfileName)
        raise InvalidConfig(f"unknown security profile {name!r}; choose one of {choices}") from None


def security_profile(name: object, lockout: LockoutConfig | None = None) -> SecurityProfile:
    """The profile called `name`, with the factory's lockout numbers if it chose its own."""
    profile = PROFILES[profile_name(name)]
    return profile if lockout is None else profile.with_lockout(lockout)


def lockout_config(name: object, **overrides: Any) -> LockoutConfig:
    """The lockout numbers of profile `name` with `overrides` (validated, unknown names refused)."""
    return PROFILES[profile_name(name)].lockout.replace(**overrides)
