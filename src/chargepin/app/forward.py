"""The fleet's own pages through the radio app: /app/* (but the app's own Bluetooth screens and
static files) forwarded to the one fleet URL the app was started with, so there is one app, not
two copies of every page.

The browser's Host is kept, so the fleet's CSRF Origin check compares the browser's Origin
with the address the browser used (ours); the fleet's answer (status, page, cookies, redirects,
Retry-After) comes back as it is. The request is always built from the fleet's base URL and the
request's own path, which starts with /app: nothing else is ever reached. `RADIO_HEADER` asks the
fleet's pages for the Nearby link.
"""

from __future__ import annotations

from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx
from fastapi import Request, Response

from chargepin.fleet.web.templating import RADIO_HEADER

REQUEST_HEADERS = (
    "accept",
    "accept-language",
    "content-length",
    "content-type",
    "cookie",
    "origin",
    "referer",
    "sec-fetch-site",
    "user-agent",
)
"""What a page needs from the browser; nothing hop-by-hop, no Authorization."""
RESPONSE_HEADERS = ("content-type", "location", "retry-after", "cache-control")
"""What the browser needs from the fleet besides cookies; our own security headers are added
by our middleware (the same as the fleet's)."""


def _no_cookie_jar() -> CookieJar:
    """A jar that keeps nothing. httpx's client keeps the cookies of every answer by default
    and sends them with every later request: one browser's session would have been sent for
    the next browser without a cookie (found by test_one_browsers_cookies_...). Each request
    carries its own browser's Cookie header and nothing else."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


class Forwarder:
    """An HTTP client of the fleet, for its pages."""

    def __init__(self, fleet_url: str, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base = httpx.URL(fleet_url.rstrip("/"))
        self._http = httpx.AsyncClient(
            transport=transport, timeout=15.0, follow_redirects=False, cookies=_no_cookie_jar()
        )

    async def close(self) -> None:
        await self._http.aclose()

    def target(self, request: Request) -> httpx.URL:
        """The fleet URL of this request: the fleet's origin, the request's path and query."""
        path = request.scope.get("raw_path") or request.url.path.encode()
        query = request.scope.get("query_string", b"")
        url = self.base.copy_with(raw_path=path + (b"?" + query if query else b""))
        if (url.scheme, url.host, url.port) != (self.base.scheme, self.base.host, self.base.port):
            raise ValueError("a forwarded request must stay on the fleet")  # cannot happen
        return url

    async def forward(self, request: Request) -> Response:
        headers = {n: v for n in REQUEST_HEADERS if (v := request.headers.get(n)) is not None}
        headers["host"] = request.headers.get("host", self.base.netloc.decode())
        headers[RADIO_HEADER] = "1"
        # Streamed, not read: a sticker's photo may be megabytes (BodyLimit, app/server.py,
        # bounds it as the fleet does, and the fleet reads and drops what it does not keep).
        body = request.stream() if request.method == "POST" else None
        try:
            answer = await self._http.request(
                request.method, self.target(request), headers=headers, content=body
            )
        except httpx.HTTPError as error:
            return Response(
                f"the fleet service at {self.base} did not answer ({type(error).__name__}); "
                "check that it runs and try again",
                status_code=502,
                media_type="text/plain",
            )
        response = Response(answer.content, status_code=answer.status_code)
        for name in RESPONSE_HEADERS:
            if name in answer.headers:
                response.headers[name] = answer.headers[name]
        for cookie in answer.headers.get_list("set-cookie"):
            response.headers.append("set-cookie", cookie)
        return response
