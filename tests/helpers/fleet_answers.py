"""What the fleet service answers when it refuses: one shape, `{"error", "detail"}`."""

from __future__ import annotations

import httpx


def assert_error_shape(response: httpx.Response, status: int, error: str) -> None:
    """`response` is a refusal with `status`, JSON `{"error": error, "detail": <non-empty>}`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"] == error, body
    assert body["detail"]
