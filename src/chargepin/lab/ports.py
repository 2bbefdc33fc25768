"""Free TCP ports on loopback, for the radio's controllers and the servers the lab starts."""

from __future__ import annotations

import contextlib
import socket

LOOPBACK = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """Ports the kernel just handed out on 127.0.0.1 (held together, so they differ).

    Another program could take one before the caller binds it; the caller then fails loudly
    (`chargepin radio` and uvicorn both refuse a port in use).
    """
    with contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            for _ in range(count)
        ]
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def free_port() -> int:
    """One free port on 127.0.0.1 (see `free_ports`)."""
    [port] = free_ports(1)
    return port
