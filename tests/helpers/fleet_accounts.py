"""What an app sends the fleet service in tests: its version header and a logged-in account."""

from __future__ import annotations

from fastapi.testclient import TestClient

APP_VERSION = {"X-App-Version": "2.3.0"}
PASSWORD = "correct horse battery"


def login(client: TestClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    """Register (if new) and log in; the headers an app sends."""
    client.post("/register", json={"email": email, "password": password})
    response = client.post("/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}", **APP_VERSION}
