"""A charger daemon alone in its own process, so `chargepin bench` can measure its memory.

Run as `python -m chargepin.lab.bench_daemon STATE_FILE TRANSPORT` (e.g.
`tcp-client:127.0.0.1:9001` on a radio served by `serve_radio`). It prints `ready <address>` once
the charger advertises and stops cleanly on SIGTERM or SIGINT. The RSS of a process that also
hosts the phone, the radio and the bench would say nothing about the daemon, hence the child.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from chargepin.charger.daemon import ChargerDaemon
from chargepin.charger.service import run_charger
from chargepin.core.errors import ChargepinError

READY = "ready"
"""First word of the line the child prints once it is connectable."""

ADVERTISING_INTERVAL_MS = 20.0
"""As in the in-process bench: the phone's connect waits for the next advertising event."""


async def serve(state: Path, transport: str) -> None:
    """Run the daemon on `state` over `transport` until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def ready(daemon: ChargerDaemon) -> None:
        sys.stdout.write(f"{READY} {daemon.address}\n")
        sys.stdout.flush()

    await run_charger(
        state, transport, advertising_interval=ADVERTISING_INTERVAL_MS, on_ready=ready, stop=stop
    )


def main(argv: list[str]) -> int:
    """Entry point; returns the exit code."""
    if len(argv) != 2:
        sys.stderr.write("usage: python -m chargepin.lab.bench_daemon STATE_FILE TRANSPORT\n")
        return 2
    logging.getLogger("bumble").setLevel(logging.ERROR)
    try:
        asyncio.run(serve(Path(argv[0]), argv[1]))
    except ChargepinError as error:
        sys.stderr.write(f"bench daemon: {error}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
