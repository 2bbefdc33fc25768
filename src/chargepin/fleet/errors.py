"""Errors of the fleet service: each becomes an HTTP status with a stable code and a reason."""

from __future__ import annotations

import math
from typing import ClassVar

from chargepin.core.errors import ChargepinError

BUSY_RETRY_AFTER = 5
"""Seconds a client waits before retrying a request the database was too busy to commit. The
request already waited the busy timeout (FleetSettings.db_lock_timeout) for the lock."""


class FleetError(ChargepinError):
    """An expected failure of a request; `code` is stable, the message says what to do.

    With `keep_writes` the refusal recorded its own cost (a counted wrong claim code): the
    request's unit of work commits what was written, then answers (fleet/deps.py).
    """

    status = 400
    code = "bad_request"
    headers: ClassVar[dict[str, str] | None] = None

    def __init__(self, detail: str, *, code: str | None = None, keep_writes: bool = False) -> None:
        super().__init__(detail)
        if code is not None:
            self.code = code
        self.keep_writes = keep_writes


class Unauthorized(FleetError):
    status = 401
    code = "unauthorized"
    headers: ClassVar[dict[str, str] | None] = {"WWW-Authenticate": "Bearer"}


class Forbidden(FleetError):
    status = 403
    code = "forbidden"


class NotFound(FleetError):
    status = 404
    code = "not_found"


class Conflict(FleetError):
    status = 409
    code = "conflict"


class UpgradeRequired(FleetError):
    """PRODUCT.md: an outdated app gets a clear "update the app", never a silent failure."""

    status = 426
    code = "update_the_app"


class Unprocessable(FleetError):
    """A well-formed request whose content cannot be acted on (a malformed sticker, an epoch)."""

    status = 422
    code = "invalid_request"


class ServiceBusy(FleetError):
    """The database could not take the write now (another writer held its lock too long, or
    a concurrent transaction won); nothing was changed. Retry-After says when to try again."""

    status = 503
    code = "busy"
    headers: ClassVar[dict[str, str] | None] = {"Retry-After": str(BUSY_RETRY_AFTER)}


class TooManyAttempts(FleetError):
    """Locked out by the core lockout machine; Retry-After says when to try again."""

    status = 429
    code = "too_many_attempts"

    def __init__(
        self,
        detail: str,
        *,
        retry_after: float,
        code: str | None = None,
        keep_writes: bool = False,
    ) -> None:
        super().__init__(detail, code=code, keep_writes=keep_writes)
        self.retry_after = retry_after

    @property  # per instance: each lock has its own wait
    def headers(self) -> dict[str, str] | None:  # type: ignore[override]
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}
