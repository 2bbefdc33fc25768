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
from bumble.core import InvalidPacketError
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink, BaseSource, PacketParser, Transport

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


class _HostSink:
    """The controller's way to its host: the port's current connection, if any."""

    def __init__(self) -> None:
        self.current: asyncio.Transport | None = None

    def on_packet(self, packet: bytes) -> None:
        if self.current is not None:
            self.current.write(packet)


class _HostConnection(asyncio.Protocol):
    """One host's TCP connection to a controller's port, with its own HCI packet parser."""

    def __init__(self, source: BaseSource, sink: _HostSink) -> None:
        self.source = source
        self.sink = sink
        self.transport: asyncio.Transport | None = None
        self.parser = PacketParser(source.sink)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.sink.current = transport  # the newest host is the controller's host

    def data_received(self, data: bytes) -> None:
        if self.sink.current is not self.transport:
            return  # a host that was replaced: its late bytes are not the new host's
        try:
            self.parser.feed_data(data)
        except InvalidPacketError:
            logger.warning("invalid HCI packet from the host on a radio port, ignored")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.sink.current is self.transport:
            self.sink.current = None


class _HostPort(Transport):
    """A controller's TCP port: the latest host connection is its host.

    Bumble's tcp-server transport shares one sink and one packet parser among its connections
    and forgets the sink when any of them ends. A host that reconnects before the radio has
    seen its previous connection end - a charger daemon restarting inside its process after
    an OCPP Reset, within milliseconds - then got no answer to its HCI Reset and hung in
    power_on. Here only the current connection's end forgets it, and each connection parses
    its own bytes.
    """

    def __init__(self, source: BaseSource, sink: _HostSink, server: asyncio.Server) -> None:
        super().__init__(source, sink)
        self.server = server

    async def close(self) -> None:
        self.server.close()
        current = self.sink.current if isinstance(self.sink, _HostSink) else None
        if current is not None:
            current.close()


async def _host_port(host: str, port: int) -> _HostPort:
    source, sink = BaseSource(), _HostSink()
    server = await asyncio.get_running_loop().create_server(
        lambda: _HostConnection(source, sink), host, port
    )
    return _HostPort(source, sink, server)


async def serve_radio(ports: Sequence[int], host: str = "127.0.0.1") -> list[Transport]:
    """Serve one virtual controller per TCP port on one shared link (loopback only)."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"the virtual radio serves loopback only, not {host}")
    link = LocalLink()  # type: ignore[no-untyped-call]
    transports: list[Transport] = []
    for index, port in enumerate(ports):
        transport = await _host_port(host, port)
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
