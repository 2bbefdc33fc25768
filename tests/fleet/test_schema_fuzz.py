"""schemathesis against the fleet's own OpenAPI schema: no 5xx, every 4xx says why.

The schema has to exist when pytest collects (one test per operation), so the app is built at
import time on a SQLite file in a temporary directory that lives as long as the test session.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from chargepin.clock import SystemClock
from tests.helpers.fleet_accounts import login
from tests.helpers.fleet_settings import start_fleet

_directory = tempfile.TemporaryDirectory(prefix="chargepin-schema-")
APP = start_fleet(f"sqlite:///{Path(_directory.name) / 'fleet.db'}", SystemClock()).app
HEADERS = login(TestClient(APP), "fuzz@example.com")
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)

ENDS_SESSIONS = {"/logout", "/sessions/revoke-all", "/me/password"}
"""Called with a fresh login each time, so they cannot log HEADERS out for the operations
after them. It comes from an address of its own that never fails a login, which a locked
account still serves (core/login_throttle.py): the fuzzer's wrong old passwords lock it."""
_RELOGIN = TestClient(APP, client=("fuzz-relogin", 1))


def _headers(case: schemathesis.Case) -> dict[str, str]:
    if case.operation.path in ENDS_SESSIONS:
        return login(_RELOGIN, "fuzz-sessions@example.com")
    return HEADERS


@schema.parametrize()
@settings(max_examples=30, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_every_refusal_has_a_reason(case: schemathesis.Case) -> None:
    response = case.call(headers=_headers(case))
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json().get("detail"), response.text
