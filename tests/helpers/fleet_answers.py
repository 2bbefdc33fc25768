"""What the fleet service answers when it refuses: one shape, `{"error", "detail"}`, declared
for its route in /openapi.json."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import httpx
from fastapi.testclient import TestClient


def assert_error_shape(response: httpx.Response, status: int, error: str) -> None:
    """`response` is a refusal with `status`, JSON `{"error": error, "detail": <non-empty>}`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"] == error, body
    assert body["detail"]


Refusal = tuple[str, str, int]
"""An answer seen: (method, path, status)."""


def record_refusals(client: TestClient) -> list[Refusal]:
    """Every 4xx answer `client` gets from now on, as it gets it."""
    seen: list[Refusal] = []

    def hook(response: httpx.Response) -> None:
        if 400 <= response.status_code < 500:
            request = response.request
            seen.append((request.method, request.url.path, response.status_code))

    client.event_hooks = {**client.event_hooks, "response": [*client.event_hooks["response"], hook]}
    return seen


def undeclared(document: dict[str, Any], refusals: Iterable[Refusal]) -> set[Refusal]:
    """The refusals a route answered that its operation in the OpenAPI `document` does not
    declare, as (method, route path, status). Read off the document's paths (FastAPI nests
    included routers in its own way); a path no operation takes (no such endpoint, the web
    app's pages, a method the path does not take) has nothing to declare it and is left out."""
    paths = document["paths"]
    # The most literal template first: POST /chargers/claim before /chargers/{serial}.
    templates = sorted(paths, key=lambda template: template.count("{"))
    patterns = {t: re.compile(re.sub(r"\{[^}]+\}", "[^/]+", t)) for t in templates}
    missing = set()
    for method, path, status in refusals:
        operation, template = next(
            (
                (paths[t][method.lower()], t)
                for t in templates
                if method.lower() in paths[t] and patterns[t].fullmatch(path)
            ),
            (None, ""),
        )
        if operation is not None and str(status) not in operation["responses"]:
            missing.add((method, template, status))
    return missing
