"""`chargepin app`: the web app beside a radio, like a phone (docs/APP.md, "Radio mode")."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chargepin.cli_errors import reports_errors
from chargepin.core.errors import ChargepinError

LOOPBACK = "127.0.0.1"
"""The only address the app listens on: it serves a signed-in session over plain HTTP."""


class BadFleetUrl(ChargepinError):
    """A --fleet that is not an http(s) URL of a host."""


def fleet_base(url: str) -> str:
    """The fleet's base URL, checked: http or https, a host, no path, query or fragment (the
    app forwards /app/* to it and calls its API at the root, nothing else)."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as error:
        raise BadFleetUrl(f"--fleet {url!r} is not a URL ({error})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise BadFleetUrl(f"--fleet {url!r}: give the fleet as http(s)://HOST[:PORT]")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise BadFleetUrl(f"--fleet {url!r}: give the fleet's root, without a path or query")
    return str(parsed.copy_with(path="/")).rstrip("/")


@reports_errors
def app_command(
    transport: Annotated[
        str,
        typer.Option(
            envvar="CHARGEPIN_TRANSPORT",
            help="The phone's HCI transport, e.g. tcp-client:127.0.0.1:9002.",
        ),
    ],
    fleet: Annotated[
        str, typer.Option(help="The fleet service's URL, e.g. http://127.0.0.1:8000.")
    ],
    bonds: Annotated[
        Path,
        typer.Option(envvar="CHARGEPIN_BONDS", help="The phone's bonds and identity (SQLite)."),
    ],
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port on 127.0.0.1.")] = 8080,
    scan_seconds: Annotated[
        float, typer.Option(min=0.2, max=10.0, help="How long Nearby listens.")
    ] = 1.5,
) -> None:
    """The app beside a radio: the fleet's pages and the Bluetooth screens, on 127.0.0.1."""
    import asyncio

    import uvicorn

    from chargepin.app.radio import Radio, RadioOptions
    from chargepin.app.server import create_app
    from chargepin.phone.flows import PhoneOptions
    from chargepin.radio.transport import check_transport_name

    check_transport_name(transport)
    base = fleet_base(fleet)
    options = RadioOptions(PhoneOptions(transport=transport, bonds=bonds), scan_seconds)

    async def run() -> None:
        radio = Radio(options)
        await radio.start()  # in the server's event loop; a transport that does not open: 1 line
        config = uvicorn.Config(
            create_app(base, radio), host=LOOPBACK, port=port, log_level="warning"
        )
        typer.echo(f"the app: http://{LOOPBACK}:{port}/app/ (fleet {base})", err=True)
        await uvicorn.Server(config).serve()

    asyncio.run(run())
