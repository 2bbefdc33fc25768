"""Passwords (argon2id) and bearer tokens (random, stored as SHA-256) of the fleet service."""

from __future__ import annotations

import hashlib
import secrets
from functools import cache
from typing import Literal, get_args

from argon2 import Parameters, PasswordHasher, Type, profiles
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD = 10

PasswordHashing = Literal["default", "minimum"]
"""The named argon2id cost profiles a deployment may choose (`--password-hashing`)."""

PASSWORD_HASHING: dict[PasswordHashing, Parameters] = {
    # argon2-cffi's own default since 21.2: RFC 9106's second recommendation (the low-memory
    # one), 64 MiB, 3 passes, 4 lanes; about 0.18 s per hash on one of the CI's cores.
    "default": profiles.RFC_9106_LOW_MEMORY,
    # OWASP's Password Storage Cheat Sheet, the least it recommends for argon2id: 19 MiB, 2
    # passes, 1 lane; still argon2id, for small hardware (what it trades: docs/DEPLOY.md).
    "minimum": Parameters(
        type=Type.ID,
        version=19,
        salt_len=16,
        hash_len=32,
        time_cost=2,
        memory_cost=19 * 1024,
        parallelism=1,
    ),
}
PASSWORD_HASHING_NAMES: tuple[PasswordHashing, ...] = get_args(PasswordHashing)


class Passwords:
    """The service's argon2id hasher, with the parameters of one profile (FleetSettings).

    New hashes (a registration, a password change, a rehash) and the unknown account's dummy
    verification use the profile; a stored hash is verified with its own parameters (argon2
    reads them from the hash), so a profile change locks nobody out.
    """

    def __init__(self, profile: PasswordHashing = "default") -> None:
        if profile not in PASSWORD_HASHING:
            names = ", ".join(PASSWORD_HASHING_NAMES)
            raise ValueError(f"unknown password hashing profile {profile!r}: one of {names}")
        self.profile = profile
        self.parameters = PASSWORD_HASHING[profile]
        self._hasher = PasswordHasher.from_parameters(self.parameters)

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches `stored`; with no account (None), False after the same work.

        An unknown account still costs one argon2 verification with the profile's parameters,
        so the answer's time does not say whether the account exists (issue 9: 117 ms against
        1.5 ms), as long as the account's hash has those parameters too (`needs_rehash`).
        """
        try:
            hashed = stored or unknown_account_hash(self.profile)
            return self._hasher.verify(hashed, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        """Whether `stored` was made with other parameters than the profile's."""
        return self._hasher.check_needs_rehash(stored)


@cache
def unknown_account_hash(profile: PasswordHashing) -> str:
    """A hash of a random password nobody knows, with the profile's parameters (made once per
    process and profile, at the first unknown account)."""
    return PasswordHasher.from_parameters(PASSWORD_HASHING[profile]).hash(secrets.token_urlsafe(32))


def new_token() -> str:
    """A bearer token for the app: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> bytes:
    """What the database keeps of a token or one-time code: a leak of it logs nobody in."""
    return hashlib.sha256(token.encode()).digest()
