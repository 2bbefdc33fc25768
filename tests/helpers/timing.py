"""The event loop's clock, moved forward by the test: the fake clock of the link timers.

The daemon's link timers (the eviction grace, the idle-stranger timeout, the SMP timer) run on
the event loop's clock (`loop.call_later`): they bound radio links, not lockout time, so the
charger's FakeClock does not drive them. A test that must see such a timer fire, or see that
firing it changes nothing, moves the loop's clock past it instead of sleeping: every timer then
due runs on the loop's next turn, however loaded the machine.
"""

from __future__ import annotations

import asyncio

WITHIN = 10.0
"""Seconds an event the test has caused (a dropped link, an answer) gets to arrive: a bound
against a hang on a loaded machine, not a speed the test expects; it normally takes ms."""


def advance_loop_clock(seconds: float) -> None:
    """Move the running loop's clock `seconds` forward, for the rest of the loop's life (each
    test has its own loop)."""
    loop = asyncio.get_running_loop()
    now = loop.time
    loop.time = lambda: now() + seconds  # type: ignore[method-assign]
