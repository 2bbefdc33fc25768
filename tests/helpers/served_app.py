"""An ASGI app served over real HTTP on loopback by uvicorn, in a thread of the test.

For what only a real server shows: requests truly in parallel (each on its own connection and
thread-pool worker), and the client's address in the ASGI scope as the server sees it. The
listening socket is bound before the server starts, so a request made at once waits in the
backlog instead of racing the start-up; nothing sleeps.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

from chargepin.lab.ports import LOOPBACK

STOP_TIMEOUT = 10.0


@contextmanager
def served(app: ASGIApp) -> Iterator[str]:
    """Serve `app` on a free loopback port for the block; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        thread.join(STOP_TIMEOUT)
        sock.close()
        if thread.is_alive():
            raise RuntimeError(f"uvicorn did not stop within {STOP_TIMEOUT} s")
