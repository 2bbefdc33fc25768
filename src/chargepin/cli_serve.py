"""What the long-running commands share (`chargepin charger run`, `chargepin radio`).

They run until SIGINT or SIGTERM, which both end them cleanly (exit 0), and print one READY line
when they are ready to be used, which a supervisor or a test waits for instead of sleeping.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable


def serve_until_signal(serve: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `serve(stop)` with SIGINT and SIGTERM setting `stop`, so both end it cleanly (exit 0)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for number in signals:
            loop.add_signal_handler(number, stop.set)
        try:
            await serve(stop)
        finally:
            for number in signals:
                loop.remove_signal_handler(number)

    asyncio.run(main())


def announce_ready(line: str) -> None:
    """The one line a supervisor (or a test) waits for before using the service."""
    sys.stdout.write(f"READY {line}\n")
    sys.stdout.flush()
