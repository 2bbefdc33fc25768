"""Request bodies over 64 KiB get 413 before they are read (issue 9, point 7).

Before, one unauthenticated 300 MB `POST /register` grew the service by 726 MB. Through a real
uvicorn on loopback (a declared length, a chunked body) and the ASGI app (a streamed body whose
chunks are counted as the app pulls them).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
from fastapi.testclient import TestClient

from chargepin.clock import FakeClock
from chargepin.fleet.body_limit import MAX_BODY_BYTES
from chargepin.lab.live_server import serve
from tests.helpers.fleet_answers import assert_error_shape
from tests.helpers.fleet_settings import start_fleet

MB = 1024 * 1024


def raw_request(base_url: str, head: bytes, body_chunks: list[bytes] | None = None) -> bytes:
    """Send a request head (and chunks, if any) on a plain socket; the response's head."""
    url = urlsplit(base_url)
    with socket.create_connection((url.hostname, url.port), timeout=20) as sock:
        sock.sendall(head)
        for chunk in body_chunks or []:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed: it read no further
        response = b""
        while b"\r\n\r\n" not in response:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:  # closed with our unread bytes: what came is the answer
                break
            if not data:
                break
            response += data
    return response


def test_a_300_mb_body_is_413_before_it_is_read(db_url: str, fleet_clock: FakeClock) -> None:
    """One unauthenticated 300 MB `POST /register` grew the server by 726 MB before."""
    fleet = start_fleet(db_url, fleet_clock)
    try:
        with serve(fleet.app) as base_url:
            head = (
                b"POST /register HTTP/1.1\r\nHost: fleet\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % (300 * MB)
            )
            response = raw_request(base_url, head)  # no byte of the body is ever sent
    finally:
        fleet.dispose()
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large", response
    assert b"body_too_large" in rest or b"content-length" in rest.lower()


def test_a_chunked_body_over_the_limit_is_413(db_url: str, fleet_clock: FakeClock) -> None:
    """Without Content-Length the bytes are counted as they arrive."""
    fleet = start_fleet(db_url, fleet_clock)
    chunk = b"x" * 16 * 1024
    over = MAX_BODY_BYTES // len(chunk) + 2  # 32 KiB over the limit
    chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * over + [b"0\r\n\r\n"]
    head = (
        b"POST /register HTTP/1.1\r\nHost: fleet\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    try:
        with serve(fleet.app) as base_url:
            response = raw_request(base_url, head, chunks)
    finally:
        fleet.dispose()
    assert response.startswith(b"HTTP/1.1 413 "), response


async def test_a_streamed_body_is_refused_after_at_most_the_limit_is_read(
    db_url: str, fleet_clock: FakeClock
) -> None:
    """The app pulls the body; it stops pulling at the limit (300 MB offered, 1 MiB chunks)."""
    fleet = start_fleet(db_url, fleet_clock)
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(300):
            pulled += 1
            yield b"x" * MB

    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=fleet.app), base_url="http://fleet.local"
        ) as http:
            response = await http.post(
                "/register", content=body(), headers={"Content-Type": "application/json"}
            )
    finally:
        fleet.dispose()
    assert_error_shape(response, 413, "body_too_large")
    assert pulled * MB <= MAX_BODY_BYTES + MB, f"read {pulled} MiB"


def test_a_body_at_the_limit_is_read(client: TestClient) -> None:
    """64 KiB is served (and refused for what it says, not for its size)."""
    padded = b'{"email": "a@example.com", "password": "' + b"p" * MAX_BODY_BYTES
    at_limit = padded[: MAX_BODY_BYTES - 2] + b'"}'
    response = client.post(
        "/register", content=at_limit, headers={"Content-Type": "application/json"}
    )
    assert_error_shape(response, 422, "invalid_request")
    over = client.post(
        "/register", content=at_limit + b" ", headers={"Content-Type": "application/json"}
    )
    assert_error_shape(over, 413, "body_too_large")
