"""Forgetting throttle rows once they decide nothing: login throttles and claim sources.

Issue 9 (point 7): every wrong password, every login and every wrong claim code from a new
source made a row (migrations 0005, 0006) that nothing ever deleted, so a stream of failures
from ever new addresses grew the tables without bound. Each row now says from when it decides
nothing a missing row would not (`forget_after`, from core.login_throttle and core.claims), and
every write of such a row deletes up to `BATCH` expired ones in the same transaction: the table
holds the rows that still matter plus at most what one batch leaves, and nobody has to run
anything. `chargepin fleet prune` deletes them all at once (after an outage, say).

On PostgreSQL the rows to delete are taken `FOR UPDATE SKIP LOCKED`: a row another request
holds (and may be reviving) is skipped rather than waited for, so two writers never wait for
each other here, and the delete re-checks `forget_after` on the row it deletes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.orm import Session

from chargepin.fleet.models import ClaimSource, LoginThrottle
from chargepin.fleet.times import moment

BATCH = 100
"""Expired rows one write deletes at most: a write adds at most two rows, so this keeps up with
any stream of failures while bounding the work a request does."""

PRUNED = (LoginThrottle, ClaimSource)


def forget_after(forgotten_at: float | None, now: float) -> dt.datetime:
    """The `forget_after` of a row whose rule says `forgotten_at` (None: it may go now)."""
    return moment(now if forgotten_at is None else max(forgotten_at, now))


def prune(db: Session, model: type[LoginThrottle | ClaimSource], now: float, limit: int) -> int:
    """Delete up to `limit` rows of `model` that expired before `now`; how many went."""
    key = LoginThrottle.key if model is LoginThrottle else ClaimSource.source
    expired = model.forget_after < moment(now)
    batch = (
        select(key)
        .where(expired)
        .order_by(model.forget_after)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    result = cast(
        CursorResult[Any],
        db.execute(
            delete(model).where(key.in_(batch), expired),
            execution_options={"synchronize_session": False},
        ),
    )
    return int(result.rowcount)


def prune_all(db: Session, now: float) -> dict[str, int]:
    """Every expired row of every pruned table, batch by batch (`chargepin fleet prune`)."""
    counts = {}
    for model in PRUNED:
        total = 0
        while (deleted := prune(db, model, now, 10 * BATCH)) > 0:
            total += deleted
        counts[model.__tablename__] = total
    return counts
