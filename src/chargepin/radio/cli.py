"""`chargepin radio`: the virtual radio across processes, one controller per loopback port."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated

import typer

from chargepin.cli_errors import reports_errors
from chargepin.cli_serve import announce_ready, serve_until_signal
from chargepin.radio import TransportError, serve_radio


def _parse_ports(text: str) -> list[int]:
    """The `--ports` list, or a usage error naming the option."""
    ports: list[int] = []
    for part in text.split(","):
        try:
            port = int(part.strip())
        except ValueError:
            raise typer.BadParameter(
                f"{part.strip()!r} is not a port number", param_hint="'--ports'"
            ) from None
        if not 1 <= port <= 65535:
            raise typer.BadParameter(f"port {port} is outside 1-65535", param_hint="'--ports'")
        ports.append(port)
    if len(set(ports)) != len(ports):
        raise typer.BadParameter("each port may appear once", param_hint="'--ports'")
    return ports


@reports_errors
def radio(
    ports: Annotated[
        str, typer.Option(help="Comma-separated TCP ports on 127.0.0.1, one per controller.")
    ],
) -> None:
    """Serve a virtual radio: one controller per port on 127.0.0.1; prints `READY ports=..`."""
    numbers = _parse_ports(ports)
    serve_until_signal(lambda stop: _serve_radio(numbers, stop))


async def _serve_radio(ports: Sequence[int], stop: asyncio.Event) -> None:
    try:
        transports = await serve_radio(ports)
    except OSError as error:
        raise TransportError(
            f"cannot serve the virtual radio on 127.0.0.1 ports {ports}: {error.strerror}; "
            "pick free ports"
        ) from error
    try:
        announce_ready(f"ports={','.join(map(str, ports))}")
        await stop.wait()
    finally:
        for transport in transports:
            await transport.close()
