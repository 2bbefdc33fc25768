"""The web app's sessions: a cookie carrying a login token, and the CSRF token of each form.

A session is a login like a bearer token (the same `tokens` row, only its SHA-256 stored), so
"sign out everywhere" and a password change end it too. The cookie is HttpOnly, SameSite=Lax,
scoped to /app, and Secure when the request came over https.

CSRF (OWASP's HMAC synchronizer token): a form carries HMAC(K, session token), K being the
vault's `web-csrf` subkey; only the server can make it and only for the cookie's own session,
so a page on another site can neither read nor forge it. Before sign-in (the sign-up and
sign-in forms: login CSRF) the token is bound the same way to a random pre-session cookie.
Every POST is checked in constant time, and its Origin (or Sec-Fetch-Site) must be ours.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request, Response

from chargepin.fleet.vault import Vault

SESSION_COOKIE = "chargepin_session"
PRE_SESSION_COOKIE = "chargepin_presession"
COOKIE_PATH = "/app"
CSRF_FIELD = "csrf"
CSRF_PURPOSE = "web-csrf"


def is_https(request: Request) -> bool:
    """Whether the browser reached us over TLS (uvicorn's --proxy-headers sets the scheme)."""
    return request.url.scheme == "https"


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    """A cookie the page's scripts cannot read, sent only to /app, never cross-site POSTs."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=is_https(request),
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(
        name, path=COOKIE_PATH, httponly=True, samesite="lax", secure=is_https(request)
    )


def new_pre_session() -> str:
    return secrets.token_urlsafe(32)


def csrf_token(vault: Vault, bound_to: str) -> str:
    """The form token for the session (or pre-session) whose cookie value is `bound_to`."""
    _kid, key = vault.subkey(CSRF_PURPOSE)
    return hmac.new(key, bound_to.encode(), hashlib.sha256).hexdigest()


def csrf_matches(vault: Vault, bound_to: str | None, sent: str | None) -> bool:
    """Constant-time check of a form's token against its cookie's session."""
    if not bound_to or not sent:
        return False
    expected = csrf_token(vault, bound_to)
    return hmac.compare_digest(expected.encode(), sent.encode("utf-8", "replace"))


def same_origin(request: Request) -> bool:
    """Whether a state-changing request came from one of our own pages.

    Browsers send Origin on every POST (and Sec-Fetch-Site); a request with neither is not a
    browser's cross-site request, and the CSRF token still has to match.
    """
    origin = request.headers.get("origin")
    if origin is not None:
        own = f"{request.url.scheme}://{request.url.netloc}"
        return origin == own
    site = request.headers.get("sec-fetch-site")
    return site is None or site in ("same-origin", "none")
