"""The request body limit: bodies over `MAX_BODY_BYTES` get 413 before they are read.

A pure ASGI middleware, so it holds whatever the framework does with bodies: a declared
Content-Length over the limit is refused before a byte of the body is received, and a body
without one (chunked, or streamed by an ASGI client) is counted as it arrives and refused as
soon as it passes the limit. Without it one unauthenticated 300 MB `POST /register` grew the
service by 726 MB (issue 9).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 64 * 1024
"""The largest request body the fleet service reads. Its largest valid request (a receipt of at
most 4,096 hex digits, a ticket's eight 64-character arguments) is under 10 KiB; 64 KiB leaves
room for growth and bounds what one request can make a worker hold (docs/FLEET.md, "Limits")."""


class BodyTooLarge(HTTPException):
    """Raised from `receive` once the body passes the limit.

    An HTTPException so that FastAPI's body reader lets it through unchanged (it turns other
    errors into 400 "error parsing the body") and the app's handler answers it like any refusal.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(
            status_code=413,
            detail=f"the request body is over {limit} bytes, the most this service reads; "
            "send a smaller request",
            headers={"Connection": "close"},  # the rest of the body is never read
        )


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413 `{"error", "detail"}`.

    `larger` names the few routes that take more, by path, for POST only (the web app's photo
    of a sticker): each reads its body bounded by its own limit, which this one backs up.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES, larger: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        if scope["method"] == "POST":
            limit = self.larger.get(scope["path"], limit)
        declared = _content_length(scope)
        if declared is None:
            await _refuse(
                scope, receive, send, 400, "bad_request", "Content-Length is not a number"
            )
            return
        if declared > limit:
            await _refuse_too_large(scope, receive, send, limit)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            if started:  # the app answered already; nothing left to say
                raise
            await _refuse_too_large(scope, receive, send, limit)


def _content_length(scope: Scope) -> int | None:
    """The declared body length (0 when none is declared), or None when it is not a number."""
    values = [value for name, value in scope["headers"] if name == b"content-length"]
    if not values:
        return 0
    if len(set(values)) != 1 or not values[0].isdigit():
        return None
    return int(values[0])


async def _refuse_too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    error = BodyTooLarge(limit)
    await _refuse(
        scope, receive, send, 413, "body_too_large", error.detail, {"Connection": "close"}
    )


async def _refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    code: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
) -> None:
    response = JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)
    await response(scope, receive, send)
