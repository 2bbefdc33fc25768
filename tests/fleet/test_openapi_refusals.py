"""/openapi.json declares every refusal the service answers, in its `{error, detail}` shape.

Issue 9, point 7: login and claims answered 429 with Retry-After, every body route could answer
413 and the PIN routes 426, but the document declared none of them, and its 422 was FastAPI's
own HTTPValidationError, a shape the service never sends. Each test also makes the service
answer the refusal for real and checks the answer against the declaration.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from chargepin.clock import FakeClock
from chargepin.core.provisioning import StickerPayload
from chargepin.fleet import factory
from chargepin.fleet.app import create_app
from chargepin.fleet.models import User
from chargepin.fleet.vault import Vault
from tests.helpers.fleet_accounts import PASSWORD, login
from tests.helpers.fleet_answers import undeclared
from tests.helpers.fleet_factory import provision
from tests.helpers.fleet_records import MANDATORY, add_charger
from tests.helpers.fleet_settings import fleet_settings

ERROR_REF = "#/components/schemas/ErrorOut"
THROTTLED = {
    ("post", "/login"),
    ("post", "/register"),
    ("post", "/me/password"),
    ("post", "/chargers/claim"),
}
"""The routes a throttle guards: what they answer when it refuses is 429 + Retry-After."""


@pytest.fixture
def document(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]


def error_schema_of(response: dict[str, Any]) -> str:
    return str(response["content"]["application/json"]["schema"]["$ref"])


def test_every_route_declares_429_and_503_with_retry_after(document: dict[str, Any]) -> None:
    """Any request may meet the per-source limits (429) or back-pressure (503); the throttled
    routes describe their own 429."""
    throttled = set()
    for method, path, operation in operations(document):
        for status in ("429", "503"):
            refusal = operation["responses"][status]
            assert error_schema_of(refusal) == ERROR_REF, path
            assert refusal["headers"]["Retry-After"]["schema"]["type"] == "integer", path
        if "too many failed attempts" in operation["responses"]["429"]["description"]:
            throttled.add((method, path))
    assert throttled == THROTTLED


def test_every_body_route_declares_413_and_every_versioned_route_426(
    document: dict[str, Any],
) -> None:
    versioned = set()
    for method, path, operation in operations(document):
        responses = operation["responses"]
        if "requestBody" in operation:
            assert error_schema_of(responses["413"]) == ERROR_REF, path
        else:
            assert "413" not in responses, path
        headers = {
            p["name"].lower() for p in operation.get("parameters", []) if p["in"] == "header"
        }
        if "x-app-version" in headers:
            versioned.add((method, path))
            assert error_schema_of(responses["426"]) == ERROR_REF, path
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                assert error_schema_of(response) == ERROR_REF, (path, status)
    assert versioned >= {
        ("post", "/chargers/claim"),
        ("get", "/chargers/{serial}"),
        ("get", "/chargers/{serial}/pin"),
        ("post", "/chargers/{serial}/tickets"),
    }
    schema = document["components"]["schemas"]["ErrorOut"]
    assert set(schema["required"]) == {"error", "detail"}
    assert "HTTPValidationError" not in document["components"]["schemas"]


def _conforms(answer: Any, document: dict[str, Any], method: str, path: str) -> None:
    """The real answer is declared for its route, in the declared shape and headers."""
    declared = document["paths"][path][method]["responses"][str(answer.status_code)]
    assert error_schema_of(declared) == ERROR_REF
    assert set(answer.json()) == {"error", "detail"}
    for header in declared.get("headers", {}):
        assert int(answer.headers[header]) >= 1


def test_the_refusals_the_service_answers_are_the_ones_declared(
    client: TestClient, document: dict[str, Any]
) -> None:
    wrong = {"email": "someone@example.com", "password": "not the password at all"}
    answers = [client.post("/login", json=wrong) for _ in range(6)]
    assert answers[-1].status_code == 429
    _conforms(answers[-1], document, "post", "/login")

    headers = login(TestClient(client.app, client=("198.51.100.9", 40000)), "owner@example.com")
    (made,) = provision(client)
    body = {"payload": StickerPayload(made.serial, "0000000000ZZ").encode()}
    claims = [client.post("/chargers/claim", json=body, headers=headers) for _ in range(6)]
    assert claims[-1].status_code == 429
    _conforms(claims[-1], document, "post", "/chargers/claim")

    old_app = {**headers, "X-App-Version": "1.0"}
    too_old = client.get(f"/chargers/{made.serial}/pin?epoch=0", headers=old_app)
    assert too_old.status_code == 426
    _conforms(too_old, document, "get", "/chargers/{serial}/pin")

    big = client.post(
        "/register",
        content=b"{" + b" " * (65 * 1024) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert big.status_code == 413
    _conforms(big, document, "post", "/register")

    invalid = client.post("/register", json={"email": "not an address"})
    assert invalid.status_code == 422
    _conforms(invalid, document, "post", "/register")


ANSWER_409 = {
    ("post", "/register"),
    ("post", "/chargers/claim"),
    ("get", "/chargers/{serial}/pin"),
    ("post", "/invitations/accept"),
    ("post", "/chargers/{serial}/invitations"),
    ("delete", "/chargers/{serial}/members/{user_id}"),
    ("post", "/chargers/{serial}/presence/pin"),
}
"""Some of the routes issue 12 found answering 409 without declaring it."""


def test_the_routes_that_answer_409_declare_it(
    client: TestClient, document: dict[str, Any]
) -> None:
    for method, path in ANSWER_409:
        assert error_schema_of(document["paths"][path][method]["responses"]["409"]) == ERROR_REF
    account = {"email": "twice@example.com", "password": PASSWORD}
    assert client.post("/register", json=account).status_code == 201
    again = client.post("/register", json=account)
    assert again.status_code == 409
    _conforms(again, document, "post", "/register")

    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    ahead = client.get(f"/chargers/{charger.serial}/pin?epoch=1", headers=owner)
    assert ahead.status_code == 409 and ahead.json()["error"] == "epoch_not_attested"
    _conforms(ahead, document, "get", "/chargers/{serial}/pin")


def test_the_check_of_every_fleet_test_finds_an_undeclared_refusal(
    document: dict[str, Any],
) -> None:
    """tests/fleet/conftest.py's `client` fails a test that met a refusal its route does not
    declare; this is what it would report."""
    seen = [
        ("GET", "/chargers/CPT000001/reveals", 409),  # no route of the list conflicts
        ("GET", "/chargers/CPT000001/reveals", 404),
        ("POST", "/chargers/claim", 409),  # the literal path, not /chargers/{serial}
        ("GET", "/no/such/endpoint", 404),
    ]
    assert undeclared(document, seen) == {("GET", "/chargers/{serial}/reveals", 409)}


def test_a_provisioning_run_in_progress_is_the_409_declared(db_url: str) -> None:
    """POST /factory/chargers while another run of the prefix holds its lock (an advisory lock
    on PostgreSQL, the one writer's lock on SQLite): the 409 it answers is declared."""
    settings = fleet_settings(db_url=db_url, db_lock_timeout=0.2)
    app = create_app(settings, vault=Vault.generate(), clock=FakeClock())
    fleet = app.state.fleet
    try:
        with TestClient(app, client=("198.51.100.9", 40000)) as client:
            document = client.get("/openapi.json").json()
            headers = login(client, "factory@example.com")
            with fleet.sessions() as db, db.begin():
                db.execute(update(User).values(is_admin=True))
            body = {
                "count": 1,
                "model": "Pulsar Max",
                "firmware": "6.11.2",
                "produced": "2025-09-01",
            }
            with fleet.sessions() as other, other.begin():
                factory.claim_run(other, "CP")  # a run in progress, holding the prefix
                refused = client.post("/factory/chargers", json=body, headers=headers)
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"] == "provisioning_in_progress"
            _conforms(refused, document, "post", "/factory/chargers")
            assert client.post("/factory/chargers", json=body, headers=headers).status_code == 201
    finally:
        fleet.engine.dispose()
