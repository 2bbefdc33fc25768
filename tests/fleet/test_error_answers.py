"""Every answer but a success is `{"error", "detail"}` (issue 9, point 7): unknown routes, wrong
methods, bodies that are not JSON and 500s too, and a 500 leaks nothing of the service.
"""

from __future__ import annotations

import pytest
import sqlalchemy
from fastapi.testclient import TestClient

from chargepin.clock import FakeClock
from tests.helpers.fleet_accounts import login
from tests.helpers.fleet_answers import assert_error_shape
from tests.helpers.fleet_records import add_charger
from tests.helpers.fleet_settings import start_fleet

LEAKS = ("traceback", "sqlalchemy", "sqlite", "psycopg", "select ", "security_events", ".py")


def test_an_unknown_route_answers_error_and_detail(client: TestClient) -> None:
    assert_error_shape(client.get("/admin/../etc/passwd"), 404, "not_found")
    assert_error_shape(client.post("/chargers/CP1/nothing", json={}), 404, "not_found")


def test_a_wrong_method_answers_error_and_detail(client: TestClient) -> None:
    response = client.delete("/me")
    assert_error_shape(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "GET"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"{bad json", "application/json"), (b"\xff\xfe", "application/json"), (b"a=b", "text/plain")],
)
def test_a_body_that_is_not_json_answers_error_and_detail(
    client: TestClient, body: bytes, content_type: str
) -> None:
    response = client.post("/register", content=body, headers={"Content-Type": content_type})
    assert_error_shape(response, 422, "invalid_request")


def test_a_500_names_an_incident_and_leaks_nothing(db_url: str, fleet_clock: FakeClock) -> None:
    """A real fault (a table gone from the database): the 500 says so in our shape, no more."""
    fleet = start_fleet(db_url, fleet_clock)
    with TestClient(fleet.app, raise_server_exceptions=False) as client:
        owner = login(client, "owner@example.com")
        charger = add_charger(client, owner)
        with fleet.state.engine.begin() as connection:
            connection.execute(sqlalchemy.text("DROP TABLE security_events"))
        response = client.get(f"/chargers/{charger.serial}/events", headers=owner)
    fleet.dispose()
    assert_error_shape(response, 500, "internal_error")
    assert "incident" in response.json()["detail"]
    assert not [leak for leak in LEAKS if leak in response.text.lower()]
