"""An ASGI app served by a real uvicorn on 127.0.0.1, in a thread of the caller's process.

For the tests and `chargepin lab attack fleet-http`. In-process so that the caller keeps the
app's clock and database; a real server so that what crosses a socket (framing, Content-Length,
chunked bodies, requests truly in parallel, the client's address in the ASGI scope) is what a
phone, or an attacker, would see. httpx's own tests serve their apps the same way. The socket
listens before the server starts, so a request made at once waits in the kernel's backlog
instead of racing the start-up: nothing sleeps.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

from chargepin.fleet.settings import HTTP_KEEP_ALIVE
from chargepin.lab.ports import LOOPBACK

STOP_TIMEOUT = 30.0
BACKLOG = 256
"""Connections that may queue before uvicorn accepts them (a test's parallel burst)."""


@contextmanager
def serve(app: ASGIApp, *, port: int = 0, lifespan: bool = False) -> Iterator[str]:
    """Serve `app` on loopback until the block ends; yields its base URL. On `port`, or a free
    one when 0 (OSError when `port` is taken). With `lifespan` the app's startup runs before
    the first request and its shutdown at the end (the radio app opens its phone there)."""
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
    # and without it every response waited ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    if port:  # a port a person chose: free again at once after a restart (no TIME_WAIT wait)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((LOOPBACK, port))
    except OSError:
        sock.close()
        raise
    sock.listen(BACKLOG)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="on" if lifespan else "off",
        access_log=False,
        timeout_keep_alive=HTTP_KEEP_ALIVE,
    )
    server = uvicorn.Server(config)
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
