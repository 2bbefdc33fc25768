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
from urllib.parse import parse_qsl

from fastapi import Request, Response

from chargepin.core.limits import serial_problem
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


def csrf_key(vault: Vault) -> bytes:
    """The fleet's CSRF key K: the vault's `web-csrf` subkey (a radio app, which holds no
    vault, keeps a random K of its own for its own forms: chargepin.app)."""
    _kid, key = vault.subkey(CSRF_PURPOSE)
    return key


def csrf_token(key: bytes, bound_to: str) -> str:
    """The form token for the session (or pre-session) whose cookie value is `bound_to`."""
    return hmac.new(key, bound_to.encode(), hashlib.sha256).hexdigest()


def csrf_matches(key: bytes, bound_to: str | None, sent: str | None) -> bool:
    """Constant-time check of a form's token against its cookie's session."""
    if not bound_to or not sent:
        return False
    expected = csrf_token(key, bound_to)
    return hmac.compare_digest(expected.encode(), sent.encode("utf-8", "replace"))


def post_allowed(request: Request, key: bytes, bound_to: str | None, sent: str | None) -> bool:
    """Every state-changing request: our Origin and the form's token for this session."""
    return same_origin(request) and csrf_matches(key, bound_to, sent)


MAX_FORM_FIELDS = 8


class BadForm(ValueError):
    """A form body that does not parse (not UTF-8, too many fields)."""


def form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """A posted form's fields (the first of each name). A body that is not a form has none,
    so it carries no CSRF token and is refused as a forged request; BadForm for a form body
    that does not parse."""
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return {}
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS
        )
    except (UnicodeDecodeError, ValueError) as error:
        raise BadForm(str(error)) from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


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


NOT_NOW_COOKIE = "chargepin_notnow"
NOT_NOW_PURPOSE = "web-not-now"
MAX_NOT_NOW = 20
"""Chargers one session remembers "Not now" for (a cookie stays well under a browser's 4 KB)."""


def _session_tag(vault: Vault, session_token: str) -> str:
    """Binds the "Not now" cookie to one session: another sign-in has another tag."""
    _kid, key = vault.subkey(NOT_NOW_PURPOSE)
    return hmac.new(key, session_token.encode(), hashlib.sha256).hexdigest()[:32]


def not_now(request: Request, vault: Vault, session_token: str) -> list[str]:
    """The serials whose passcode pop-up this session answered "Not now" (docs/APP.md).

    The cookie is `<tag>.<serial>.<serial>...`; a tag of another session (signed out, signed in
    again, another account) or anything malformed counts as nothing dismissed."""
    parts = request.cookies.get(NOT_NOW_COOKIE, "").split(".")
    tag = _session_tag(vault, session_token)
    if not hmac.compare_digest(parts[0].encode("utf-8", "replace"), tag.encode()):
        return []
    return [serial for serial in parts[1 : MAX_NOT_NOW + 1] if serial_problem(serial) is None]


def remember_not_now(
    request: Request, response: Response, vault: Vault, session_token: str, serial: str
) -> None:
    """Add `serial` to this session's "Not now" cookie: HttpOnly, Lax, /app, and no Max-Age,
    so it ends with the browser's session at the latest (and with the sign-in, by its tag)."""
    kept = [s for s in not_now(request, vault, session_token) if s != serial] + [serial]
    value = ".".join([_session_tag(vault, session_token), *kept[-MAX_NOT_NOW:]])
    response.set_cookie(
        NOT_NOW_COOKIE,
        value,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=is_https(request),
    )
