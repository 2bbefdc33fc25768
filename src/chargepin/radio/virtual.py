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
FAILED_TO_ESTABLISH = hci.HCI_ErrorCode.CONNECTION_FAILED_TO_BE_ESTABLISHED_ERROR


class VirtualController(Controller):
    """A Bumble virtual controller whose HCI Reset behaves like a power cycle.

    Bumble's controller ignores HCI Reset, so a host that restarts (daemon crash, kill -9) leaves
    its old links up: the peer never learns of the disconnection (notes/bumble.md, "ghost link").
    A real controller drops every link on reset (Core spec Vol 4 Part E 7.3.2); so do we.
    """

    def on_le_connect_ind(self, packet: ll.ConnectInd) -> None:
        """A CONNECT_IND for an advertiser that has stopped fails like it does on air.

        Bumble's controller drops it silently while the initiator's controller reports the link
        up, so the central waits on a link the peripheral never saw. On real air the central's
        link fails to be established (Core spec Vol 6 Part B 4.5.2; HCI reason 0x3E).
        """
        address = packet.advertiser_address
        if self._owns(address) and not self._advertising_as(address):
            if self.link is not None:
                self.link.send_ll_control_pdu(
                    sender_address=packet.advertiser_address,
                    receiver_address=packet.initiator_address,
                    packet=ll.TerminateInd(FAILED_TO_ESTABLISH),
                )
            return
        super().on_le_connect_ind(packet)

    def _owns(self, address: hci.Address) -> bool:
        """Whether `address` is this controller's (CONNECT_INDs reach every controller)."""
        return (
            address == self.random_address
            or address == self.le_legacy_advertiser.address
            or any(s.address == address for s in self.advertising_sets.values())
        )

    def _advertising_as(self, address: hci.Address) -> bool:
        legacy = self.le_legacy_advertiser
        if legacy.enabled and legacy.address == address:
            return True
        return any(s.enabled and s.address == address for s in self.advertising_sets.values())

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

    def detach(self, endpoints: HciEndpoints) -> None:
        """Take a controller off the air (unplugged): its addresses are free for another."""
        self.link.remove_controller(endpoints.source)


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
