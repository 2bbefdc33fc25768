"""Time in the fleet database: aware UTC datetimes from the injected clock, never the system's."""

from __future__ import annotations

import datetime as dt

from chargepin.clock import Clock


def moment(seconds: float) -> dt.datetime:
    """Unix seconds as an aware UTC datetime (what the tables store)."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def utc_now(clock: Clock) -> dt.datetime:
    """The clock's time as an aware UTC datetime."""
    return moment(clock.now())


def aware(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes for timezone-aware columns: they are UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
