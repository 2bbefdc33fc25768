"""The virtual radio: Bumble's virtual controllers sharing one simulated LE link.

In-process (`VirtualRadio.attach`) for tests and the demo; across processes (`serve_radio`) so
that `chargepin charger run` and `chargepin phone` in separate processes meet on the same air.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bumble import hci, ll
from bumble.controller import Controller
from bumble.link import LocalLink
from bumble.transport import open_transport
from bumble.transport.common import AsyncPipeSink, Transport

logger = logging.getLogger(__name__)

REMOTE_POWER_OFF = hci.HCI_ErrorCode.REMOTE_DEVICE_TERMINATED_CONNECTION_DUE_TO_POWER_OFF_ERROR


class VirtualController(Controller):
    """A Bumble virtual controller whose HCI Reset behaves like a power cycle.

    Bumble's controller ignores HCI Reset, so a host that restarts (daemon crash, kill -9) leaves
    its old links up: the peer never learns of the disconnection (notes/bumble.md, "ghost link").
    A real controller drops every link on reset (Core spec Vol 4 Part E 7.3.2); so do we.
    """

    def on_hci_reset_command(self, command: hci.HCI_Reset_Command) -> Any:
        for connection in list(self.le_connections.values()):
            connection.send_ll_control_pdu(ll.TerminateInd(REMOTE_POWER_OFF))
            del self.le_connections[connection.peer_address]
        return super().on_hci_reset_command(command)


@dataclass(frozen=True)
class HciEndpoints:
    """The host side of one controller: what `Device.from_config_with_hci` takes."""

    source: Any
    sink: Any


class VirtualRadio:
    """One shared stretch of virtual air; every attached controller can reach every other."""

    def __init__(self) -> None:
        self.link = LocalLink()  # type: ignore[no-untyped-call]
        self._count = 0

    def attach(self, name: str | None = None) -> HciEndpoints:
        """A new controller on this air, ready for a host in the running event loop."""
        self._count += 1
        controller = VirtualController(name or f"vc{self._count}", link=self.link)
        return HciEndpoints(source=controller, sink=AsyncPipeSink(controller))


async def serve_radio(ports: Sequence[int], host: str = "127.0.0.1") -> list[Transport]:
    """Serve one virtual controller per TCP port on one shared link (loopback only)."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"the virtual radio serves loopback only, not {host}")
    link = LocalLink()  # type: ignore[no-untyped-call]
    transports: list[Transport] = []
    for index, port in enumerate(ports):
        transport = await open_transport(f"tcp-server:{host}:{port}")
        transports.append(transport)
        VirtualController(
            f"vc{index}", host_source=transport.source, host_sink=transport.sink, link=link
        )
    return transports


async def run_radio(ports: Sequence[int], ready: asyncio.Event | None = None) -> None:
    """Serve until cancelled."""
    transports = await serve_radio(ports)
    try:
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()
    finally:
        for transport in transports:
            await transport.close()
