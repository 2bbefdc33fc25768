"""The web app's security headers, on every answer under /app (pages, redirects, static files).

The JSON API and /docs keep theirs: Swagger UI's page needs a script from a CDN and inline code,
which this policy forbids on purpose.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "/app"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; base-uri 'none'; object-src 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
"""Scripts, styles, images and forms from us only, no inline code, never in a frame."""

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it Chromium sends `Origin: null` on our own form POSTs (Fetch
    # standard), and the CSRF check could no longer tell our pages from another site's.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = "max-age=31536000"


def under_app(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


class SecurityHeaders:
    """ASGI middleware: the headers above on every /app answer; pages are never cached (one
    may hold a PIN), the static files may be."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not under_app(scope["path"]):
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith(PREFIX + "/static/")
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
                if https:
                    headers["Strict-Transport-Security"] = HSTS
                if not static:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)
