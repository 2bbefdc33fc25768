"""GET /health: the load balancer's check, 200 naming the process, 503 when the database is gone."""

from __future__ import annotations

import dataclasses
import os

from fastapi.testclient import TestClient

from chargepin.fleet.db import make_engine
from chargepin.lab.ports import free_port


def test_health_names_the_answering_process_without_a_token(client: TestClient) -> None:
    answer = client.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "worker": os.getpid()}


def test_health_is_503_with_retry_after_when_the_database_does_not_answer(
    client: TestClient,
) -> None:
    state = client.app.state.fleet  # type: ignore[attr-defined]
    gone = make_engine(f"postgresql+psycopg://fleet@127.0.0.1:{free_port()}/fleet")
    client.app.state.fleet = dataclasses.replace(state, engine=gone)  # type: ignore[attr-defined]
    try:
        answer = client.get("/health")
    finally:
        client.app.state.fleet = state  # type: ignore[attr-defined]
        gone.dispose()
    assert answer.status_code == 503
    assert answer.json()["error"] == "busy"
    assert "database does not answer" in answer.json()["detail"]
    assert int(answer.headers["Retry-After"]) > 0
