"""The refusals each route declares in the OpenAPI document, in the one `{error, detail}` shape.

Issue 9 (point 7): the service answered 429, 413 and 426 with `{"error", "detail"}` (and 429
with Retry-After), but /openapi.json declared none of them, and its 422 was FastAPI's own
`HTTPValidationError`, a shape the service never sends. A client generated from the document
could not know a login may be throttled or how long to wait.

Where a refusal applies is read off each operation where it can be: 401 wherever the login's
Authorization header is read (fleet/deps.current_user), 403 and 404 wherever a charger's serial
is in the path (fleet/access.py: a stranger gets 404, a revoked member or one who is not the
owner 403), 413 wherever a request body is taken (fleet/body_limit.py refuses it before the
route runs), 426 wherever X-App-Version is read (fleet/deps.check_app_version), 422 wherever a
parameter or body is validated; 429 (the per-source limits, fleet/source_limits.py) and 503
(back-pressure) on every route, with their Retry-After. What a route's shape does not show (a
409, a wrong password's 403, /login's 401) it declares with `responses=refused(...)`, and a
throttled route says more of its 429 with `responses=THROTTLED`; issue 12 found register, claim,
the reveal and most member routes answering 409 undeclared. tests/fleet/conftest.py checks that
every refusal the fleet tests see a route answer is declared for it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from chargepin.fleet.body_limit import MAX_BODY_BYTES

ERROR_SCHEMA = "ErrorOut"
APP_VERSION_HEADER = "x-app-version"
AUTHORIZATION_HEADER = "authorization"


class ErrorOut(BaseModel):
    """Every answer but a success (docs/FLEET.md, "Limits and error answers")."""

    error: str = Field(description="a stable code, e.g. too_many_attempts")
    detail: str = Field(description="what was wrong and what to do, for people")


RETRY_AFTER = {
    "Retry-After": {
        "description": "whole seconds until the attempt is served again",
        "schema": {"type": "integer", "minimum": 1},
    }
}

_CONTENT = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}}
_DECLARED = {
    401: "unauthorized: not logged in, or the login expired or is unknown; log in (POST /login) "
    "and send Authorization: Bearer <token>",
    403: "forbidden: not this caller's to do (an owner's action, a revoked member); `detail` "
    "says who may",
    404: "not_found: no such charger on the caller's account (a serial cannot be probed), or no "
    "such member or invitation of it",
    409: "conflict: the state of the charger or the account does not allow it now (`error` "
    "names why, `detail` what to do), or a concurrent request changed the same thing first; "
    "nothing was changed",
    410: "gone: the invitation or the presence nonce expired; ask for a new one",
    413: f"the request body is over {MAX_BODY_BYTES // 1024} KiB: refused before it is read",
    422: "a parameter or the body is invalid; `detail` names each problem",
    426: "X-App-Version is missing, not a version, or too old: update the app",
    429: "too_many_requests: more requests from this address than the service takes "
    "(fleet/source_limits.py); try again after Retry-After seconds",
    503: "busy: the database is slow or its connections are taken; nothing was changed, try "
    "again after Retry-After seconds",
}
"""Each refusal's one description: what `refusals_of` reads off an operation, and what a
route's `responses=refused(...)` declares unless it says more of its own."""
_WITH_RETRY_AFTER = {429, 503}


def refused(*statuses: int, why: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """`responses=` for the refusals a route answers that its shape does not show (a conflict,
    a wrong password): each in the `ErrorOut` shape, described by `why` where the route says
    more than the general description."""
    declared: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        declared[status] = {
            "model": ErrorOut,
            "description": (why or {}).get(status) or _DECLARED[status],
        }
        if status in _WITH_RETRY_AFTER:
            declared[status]["headers"] = RETRY_AFTER
    return declared


THROTTLED = refused(
    429,
    why={
        429: "too many failed attempts from this account or address: not served; try again "
        "after Retry-After seconds"
    },
)
"""For the routes a throttle guards (login, registration, password change, claims)."""


def refusals_of(operation: dict[str, Any]) -> dict[int, str]:
    """The refusals an OpenAPI operation can answer that its shape shows, with descriptions:
    read off the document, not the routes, so it holds whatever way the framework nests them."""
    statuses = []
    parameters = operation.get("parameters", [])
    headers = {p["name"].lower() for p in parameters if p.get("in") == "header"}
    if AUTHORIZATION_HEADER in headers:  # deps.current_user: no login, or a dead one
        statuses.append(401)
    if any(p["name"] == "serial" and p.get("in") == "path" for p in parameters):
        statuses += [403, 404]  # access.membership: a stranger, a revoked member, not the owner
    if "requestBody" in operation:
        statuses.append(413)
    if parameters or "requestBody" in operation:
        statuses.append(422)
    if APP_VERSION_HEADER in headers:
        statuses.append(426)
    statuses += [429, 503]  # any request: the per-source limits, back-pressure
    return {status: _DECLARED[status] for status in statuses}


def _declared_by_route(response: dict[str, Any] | None) -> bool:
    """A refusal the route declared itself (`refused`, `THROTTLED`): it says more than the
    general one. FastAPI's own 422 (HTTPValidationError) is not one."""
    return response is not None and response.get("content") == _CONTENT


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with every operation's refusals declared (built once)."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas[ERROR_SCHEMA] = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    for path in document.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            for status, description in refusals_of(operation).items():
                if _declared_by_route(responses.get(str(status))):
                    continue
                declared: dict[str, Any] = {"description": description, "content": _CONTENT}
                if status in _WITH_RETRY_AFTER:
                    declared["headers"] = RETRY_AFTER
                responses[str(status)] = declared
    schemas.pop("HTTPValidationError", None)  # FastAPI's 422 shape: the service never sends it
    schemas.pop("ValidationError", None)
    app.openapi_schema = document
    return document


def declare_refusals(app: FastAPI) -> None:
    """Serve `openapi_document` as the app's /openapi.json."""
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
