"""The fleet service's settings: where the database and the vault key are, what it accepts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from chargepin.fleet.db import DEFAULT_URL, LOCK_TIMEOUT, POOL_TIMEOUT, STATEMENT_TIMEOUT
from chargepin.fleet.source_limits import SourceLimitSettings

if TYPE_CHECKING:
    from chargepin.fleet.security import PasswordHashing

HTTP_KEEP_ALIVE = 30
"""Seconds the server keeps an idle HTTP connection open (uvicorn's default is 5 s). httpx, the
phone's client, drops idle pooled connections after 5 s too: a client reusing a connection at
the instant the server closes it gets a ReadError for a request the server never read (seen in
CI under load). The server must outlast its clients' pools; a proxy in front has its own
upstream keep-alive (docs/DEPLOY.md)."""


@dataclass(frozen=True)
class FleetSettings:
    """Everything the service reads at start; environment variables override the defaults."""

    db_url: str = DEFAULT_URL
    # How long a write waits for another writer's lock (a large `fleet provision`) before 503.
    db_lock_timeout: float = LOCK_TIMEOUT
    # Back-pressure (docs/FLEET.md, "Limits"): a request waits at most db_pool_timeout for one of
    # db_pool_size + db_max_overflow connections, and a statement runs at most
    # db_statement_timeout on PostgreSQL; past either it is 503 with Retry-After, never a hang.
    db_pool_size: int = 5
    db_max_overflow: int = 10
    db_pool_timeout: float = POOL_TIMEOUT
    db_statement_timeout: float = STATEMENT_TIMEOUT
    vault_key_file: Path = Path("chargepin-vault-key.json")
    # PRODUCT.md: an app too old to know the PIN gets "update the app", never a silent failure.
    min_app_version: str = "2.0.0"
    token_lifetime: float = 30 * 24 * 3600.0
    invitation_lifetime: float = 7 * 24 * 3600.0
    # The Heartbeat interval a BootNotification answer gives chargers (OCPP), in seconds; a
    # charger silent for two of them (and 30 s) counts as offline (fleet/csms/registry.py).
    ocpp_heartbeat_interval: int = 300
    # Open commands an owner may queue for one charger before 409 too_many_queued (outbox.py).
    outbox_max_open: int = 20
    # Per-source request rate and requests/sockets at once (fleet/source_limits.py).
    source_limits: SourceLimitSettings = field(default_factory=SourceLimitSettings)
    # The argon2id cost of new password hashes and of the unknown account's verification
    # (fleet/security.py: "default" RFC 9106's low-memory profile, "minimum" OWASP's least).
    password_hashing: PasswordHashing = "default"

    @classmethod
    def from_env(cls, **overrides: object) -> FleetSettings:
        values: dict[str, object] = {}
        if url := os.environ.get("CHARGEPIN_DB_URL"):
            values["db_url"] = url
        if version := os.environ.get("CHARGEPIN_MIN_APP_VERSION"):
            values["min_app_version"] = version
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
