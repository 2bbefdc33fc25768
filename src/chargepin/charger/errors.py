"""Errors of the charger daemon's adapters, rooted in ChargepinError."""

from __future__ import annotations

from chargepin.core.errors import ChargepinError


class StateError(ChargepinError):
    """The charger's state database is missing, unreadable, not ours, or a value is invalid.

    The message names the file and the next step (restore a backup, provision again, fix the
    argument), because at this point the daemon cannot serve pairing attempts safely.
    """
