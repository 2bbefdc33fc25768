"""Open any Bumble HCI transport by name, as the endpoints a chargepin device is built on.

`tcp-client:127.0.0.1:PORT` reaches `chargepin radio`; `usb:0`, `hci-socket:0`, `serial:...`
reach real controllers. Network transports are held to loopback (the virtual radio is local).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bumble.transport import open_transport

from chargepin.core.errors import ChargepinError
from chargepin.radio.virtual import HciEndpoints

NETWORK_SCHEMES = ("tcp-client", "tcp-server", "udp", "ws-client", "ws-server", "android-netsim")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]", "_")


class TransportError(ChargepinError):
    """A transport name that cannot be opened; the message says what to pass instead."""


def check_transport_name(name: str) -> None:
    """Refuse malformed names and network transports to anything but loopback."""
    scheme, _, rest = name.partition(":")
    if not scheme:
        raise TransportError(
            f"transport {name!r} has no type; use e.g. tcp-client:127.0.0.1:9001, usb:0 or "
            "hci-socket:0"
        )
    if scheme in NETWORK_SCHEMES:
        host = rest.rsplit(":", 1)[0] if ":" in rest else rest
        if host not in LOOPBACK_HOSTS:
            raise TransportError(
                f"transport {name!r} targets {host or 'no host'}; chargepin only uses loopback "
                "(127.0.0.1) for network transports"
            )


@asynccontextmanager
async def open_hci(name: str) -> AsyncIterator[HciEndpoints]:
    """The HCI endpoints of transport `name`, closed on exit."""
    check_transport_name(name)
    try:
        transport = await open_transport(name)
    except Exception as error:  # Bumble raises OSError, ValueError or its own types per transport
        raise TransportError(f"could not open transport {name!r}: {error}") from error
    try:
        yield HciEndpoints(source=transport.source, sink=transport.sink)
    finally:
        await transport.close()
