"""Passwords (argon2id) and bearer tokens (random, stored as SHA-256) of the fleet service."""

from __future__ import annotations

import hashlib
import secrets
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters

MIN_PASSWORD = 10


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether `password` matches `stored`; with no account (None), False after the same work.

    An unknown account still costs one argon2 verification with the same parameters, so the
    answer's time does not say whether the account exists (issue 9: 117 ms against 1.5 ms).
    """
    try:
        return _hasher.verify(stored or unknown_account_hash(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


@cache
def unknown_account_hash() -> str:
    """A hash of a random password nobody knows, made with the hasher's own parameters."""
    return _hasher.hash(secrets.token_urlsafe(32))


def new_token() -> str:
    """A bearer token for the app: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> bytes:
    """What the database keeps of a token or one-time code: a leak of it logs nobody in."""
    return hashlib.sha256(token.encode()).digest()
