"""The refusals each route declares in the OpenAPI document, in the one `{error, detail}` shape.

Issue 9 (point 7): the service answered 429, 413 and 426 with `{"error", "detail"}` (and 429
with Retry-After), but /openapi.json declared none of them, and its 422 was FastAPI's own
`HTTPValidationError`, a shape the service never sends. A client generated from the document
could not know a login may be throttled or how long to wait.

Where a refusal applies is read off each operation where it can be: 413 wherever a request body
is taken (fleet/body_limit.py refuses it before the route runs), 426 wherever X-App-Version is
read (fleet/deps.check_app_version), 422 wherever a parameter or body is validated; 429 (the
per-source limits, fleet/source_limits.py) and 503 (back-pressure) on every route, with their
Retry-After. A throttled route says more of its 429 with `responses=THROTTLED`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from chargepin.fleet.body_limit import MAX_BODY_BYTES

ERROR_SCHEMA = "ErrorOut"
APP_VERSION_HEADER = "x-app-version"


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

THROTTLED: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorOut,
        "description": "too many failed attempts from this account or address: not served; "
        "try again after Retry-After seconds",
        "headers": RETRY_AFTER,
    }
}
"""For the routes a throttle guards (login, registration, password change, claims)."""

_CONTENT = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}}
_DECLARED = {
    413: f"the request body is over {MAX_BODY_BYTES // 1024} KiB: refused before it is read",
    422: "a parameter or the body is invalid; `detail` names each problem",
    426: "X-App-Version is missing, not a version, or too old: update the app",
    429: "too_many_requests: more requests from this address than the service takes "
    "(fleet/source_limits.py); try again after Retry-After seconds",
    503: "busy: the database is slow or its connections are taken; nothing was changed, try "
    "again after Retry-After seconds",
}
_WITH_RETRY_AFTER = {429, 503}


def refusals_of(operation: dict[str, Any]) -> dict[int, str]:
    """The refusals an OpenAPI operation can answer that its shape shows, with descriptions:
    read off the document, not the routes, so it holds whatever way the framework nests them."""
    statuses = []
    if "requestBody" in operation:
        statuses.append(413)
    parameters = operation.get("parameters", [])
    if parameters or "requestBody" in operation:
        statuses.append(422)
    headers = {p["name"].lower() for p in parameters if p.get("in") == "header"}
    if APP_VERSION_HEADER in headers:
        statuses.append(426)
    statuses += [429, 503]  # any request: the per-source limits, back-pressure
    return {status: _DECLARED[status] for status in statuses}


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
                declared: dict[str, Any] = {"description": description, "content": _CONTENT}
                if status in _WITH_RETRY_AFTER:
                    declared["headers"] = RETRY_AFTER
                if status == 429 and "429" in responses:
                    continue  # a throttle's own 429 (THROTTLED) says more than the general one
                responses[str(status)] = declared
    schemas.pop("HTTPValidationError", None)  # FastAPI's 422 shape: the service never sends it
    schemas.pop("ValidationError", None)
    app.openapi_schema = document
    return document


def declare_refusals(app: FastAPI) -> None:
    """Serve `openapi_document` as the app's /openapi.json."""
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
