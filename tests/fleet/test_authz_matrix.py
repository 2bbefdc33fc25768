"""Every endpoint of members, events and tickets against every kind of caller.

Unauthenticated -> 401; stranger -> 404 (a serial cannot be probed); invited user -> what the
role allows, else 403; revoked user -> 403; owner -> allowed. Nobody who is refused ever gets a
PIN, the charger's secret, a ticket or an invitation code in the answer.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from chargepin.core.presence import PROOF_SIZE
from chargepin.core.tickets import Action, Receipt, sign_receipt
from tests.helpers.fleet_accounts import APP_VERSION, PASSWORD, login, signed_in
from tests.helpers.fleet_records import MANDATORY, ChargerRecord, add_charger

CALLERS = ("anonymous", "stranger", "user", "revoked", "owner")


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # "{serial}" and "{victim}" are filled in
    body: Callable[[ChargerRecord], dict[str, Any] | None]
    user: int  # what an invited user gets
    owner: int
    charger_scoped: bool = True
    ends_session: bool = False  # the caller logs in again after it

    def expected(self, caller: str) -> int:
        if caller == "anonymous":
            return 401
        if caller == "owner":
            return self.owner
        if caller == "user":
            return self.user
        if caller == "revoked":
            return 403 if self.charger_scoped else self.user
        return 404 if self.charger_scoped else self.user  # stranger


def _ticket(action: str, args: dict[str, str] | None = None) -> Callable[[ChargerRecord], Any]:
    return lambda _c: {
        "challenge": secrets.token_bytes(16).hex(),
        "action": action,
        "args": args or {},
    }


def _receipt(charger: ChargerRecord) -> dict[str, Any]:
    signed = sign_receipt(
        charger.secret,
        Receipt(
            serial=charger.serial,
            challenge=secrets.token_bytes(16),
            action=Action.REMOVE_PHONE,
            epoch=0,
            pin_enabled=True,
            fingerprint=charger.fingerprint(charger.pin(0)),
            bonds_removed=1,
        ),
    )
    return {"receipt": signed.hex()}


def _reconcile(charger: ChargerRecord) -> dict[str, Any]:
    return charger.open_info(0, charger.pin(0))


def _bond(charger: ChargerRecord) -> dict[str, Any]:
    """A fresh phone's bond statement, as the charger makes it after a pairing."""
    address = ":".join(f"{octet:02X}" for octet in b"\xc0" + secrets.token_bytes(5))
    return charger.bond_statement(address, 1, secrets.token_bytes(16))


ENDPOINTS = [
    Endpoint("GET", "/me", lambda _c: None, user=200, owner=200, charger_scoped=False),
    Endpoint("POST", "/logout", lambda _c: None, 204, 204, False, ends_session=True),
    Endpoint("POST", "/sessions/revoke-all", lambda _c: None, 200, 200, False, ends_session=True),
    Endpoint(
        "POST",
        "/me/password",
        lambda _c: {"old_password": PASSWORD, "new_password": PASSWORD},
        user=200,
        owner=200,
        charger_scoped=False,
        ends_session=True,
    ),
    Endpoint(
        "POST",
        "/chargers/{serial}/invitations",
        lambda _c: {"email": f"new-{secrets.token_hex(4)}@example.com"},
        user=403,
        owner=201,
    ),
    Endpoint(
        "POST",
        "/invitations/accept",
        lambda _c: {"code": _c.serial},  # replaced by a real code for someone else
        user=403,
        owner=403,
        charger_scoped=False,
    ),
    Endpoint("GET", "/chargers/{serial}/invitations", lambda _c: None, user=403, owner=200),
    Endpoint("DELETE", "/chargers/{serial}/invitations/{invitation}", lambda _c: None, 403, 200),
    Endpoint("GET", "/chargers/{serial}/members", lambda _c: None, user=403, owner=200),
    Endpoint("DELETE", "/chargers/{serial}/members/{victim}", lambda _c: None, 403, 200),
    Endpoint(
        "POST",
        "/chargers/{serial}/events",
        lambda _c: {"kind": "wrong_pin", "detail": "seen by the phone"},
        user=201,
        owner=201,
    ),
    Endpoint("GET", "/chargers/{serial}/events", lambda _c: None, user=403, owner=200),
    Endpoint("POST", "/chargers/{serial}/tickets", _ticket("list_phones"), 200, 200),
    Endpoint("POST", "/chargers/{serial}/tickets", _ticket("admit_pairing"), 200, 200),
    Endpoint("POST", "/chargers/{serial}/tickets", _ticket("change_pin"), 403, 200),
    Endpoint(
        "POST", "/chargers/{serial}/tickets", _ticket("change_pin", {"pin": "730418"}), 403, 200
    ),
    Endpoint("POST", "/chargers/{serial}/tickets", _ticket("remove_phone", {"all": "1"}), 403, 200),
    Endpoint("POST", "/chargers/{serial}/receipts", _receipt, user=200, owner=200),
    Endpoint("POST", "/chargers/{serial}/reconcile", _reconcile, user=200, owner=200),
    Endpoint("POST", "/chargers/{serial}/phones", _bond, user=200, owner=200),
    Endpoint("POST", "/chargers/{serial}/presence/nonces", lambda _c: None, user=201, owner=201),
    Endpoint(
        "POST",
        "/chargers/{serial}/presence/pin",
        lambda _c: {  # a nonce nobody was issued: members are told so, nobody gets a PIN
            "nonce": secrets.token_bytes(16).hex(),
            "proof": secrets.token_bytes(PROOF_SIZE).hex(),
            "address": "C0:11:22:33:44:55",
        },
        user=422,
        owner=422,
    ),
    Endpoint("GET", "/chargers", lambda _c: None, user=200, owner=200, charger_scoped=False),
    Endpoint("GET", "/chargers/{serial}", lambda _c: None, user=200, owner=200),
    Endpoint("GET", "/chargers/{serial}/pin?epoch=0", lambda _c: None, user=200, owner=200),
    Endpoint("GET", "/chargers/{serial}/reveals", lambda _c: None, user=403, owner=200),
    Endpoint("GET", "/chargers/{serial}/security-events", lambda _c: None, 403, 200),
    Endpoint("GET", "/chargers/{serial}/connection", lambda _c: None, 403, 200),
    Endpoint("GET", "/chargers/{serial}/commands", lambda _c: None, 403, 200),
    Endpoint("POST", "/chargers/{serial}/commands", lambda _c: {"action": "rekey"}, 403, 202),
    Endpoint(
        "POST",
        "/chargers/claim",
        lambda _c: {"payload": "CHARGEPIN:1:CP99999999:0123456789AB"},
        user=403,
        owner=403,
        charger_scoped=False,
    ),
    Endpoint(
        "POST",
        "/factory/chargers",
        lambda _c: {
            "count": 1,
            "model": "Pulsar Max",
            "firmware": "6.11.2",
            "produced": "2025-09-01",
        },
        user=403,
        owner=403,  # the factory line needs an admin account
        charger_scoped=False,
    ),
]


def _invite(client: TestClient, owner: dict[str, str], serial: str, email: str) -> str:
    response = client.post(f"/chargers/{serial}/invitations", json={"email": email}, headers=owner)
    assert response.status_code == 201, response.text
    return str(response.json()["code"])


def _join(client: TestClient, owner: dict[str, str], serial: str, email: str) -> dict[str, str]:
    code = _invite(client, owner, serial, email)
    headers = login(client, email)
    assert client.post("/invitations/accept", json={"code": code}, headers=headers).is_success
    return headers


def test_every_endpoint_for_every_caller(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    emails = {
        "stranger": "stranger@example.com",
        "user": "user@example.com",
        "revoked": "revoked@example.com",
        "owner": "owner@example.com",
    }
    headers = {
        "anonymous": dict(APP_VERSION),
        "stranger": login(client, emails["stranger"]),
        "user": _join(client, owner, charger.serial, emails["user"]),
        "revoked": _join(client, owner, charger.serial, emails["revoked"]),
        "owner": owner,
    }
    # A member for each caller to try to revoke, signed in once (signing in is not the subject
    # here: one argon2 hash for them all), invited and accepted again before each such route.
    made = signed_in(client, [f"v-{caller}@example.com" for caller in CALLERS])
    victims = dict(zip(CALLERS, made, strict=True))
    revoked_id = client.get("/me", headers=headers["revoked"]).json()["id"]
    assert client.delete(
        f"/chargers/{charger.serial}/members/{revoked_id}", headers=owner
    ).is_success

    never_shown = [charger.secret.hex(), charger.pin(0).digits, charger.pin(1).digits, "730418"]
    problems = []
    seen = set()
    for endpoint in ENDPOINTS:
        seen.add((endpoint.method, endpoint.path))
        for caller in CALLERS:
            victim_id = 0
            if "{victim}" in endpoint.path:  # a member for each caller to try to revoke
                victim = victims[caller]
                code = _invite(client, owner, charger.serial, f"v-{caller}@example.com")
                accepted = client.post("/invitations/accept", json={"code": code}, headers=victim)
                assert accepted.is_success, accepted.text
                victim_id = client.get("/me", headers=victim).json()["id"]
            invitation_id = 0
            if "{invitation}" in endpoint.path:  # an open invitation for each caller to withdraw
                invitation_id = client.post(
                    f"/chargers/{charger.serial}/invitations",
                    json={"email": f"i-{caller}@example.com"},
                    headers=owner,
                ).json()["id"]
            path = endpoint.path.format(
                serial=charger.serial, victim=victim_id, invitation=invitation_id
            )
            body = endpoint.body(charger)
            if endpoint.path == "/invitations/accept":
                body = {"code": _invite(client, owner, charger.serial, "other@example.com")}
            response = client.request(endpoint.method, path, json=body, headers=headers[caller])
            if endpoint.ends_session and caller in emails:
                headers[caller] = login(client, emails[caller])
                owner = headers["owner"]
            expected = endpoint.expected(caller)
            where = f"{caller} {endpoint.method} {endpoint.path} {body}"
            if response.status_code != expected:
                problems.append(f"{where}: {response.status_code}, expected {expected}")
            text = response.text
            if charger.secret.hex() in text:
                problems.append(f"{where}: the charger secret in the answer")
            if not response.is_success and response.status_code != 204:
                payload = response.json()
                leaked = [s for s in never_shown if s in text]
                leaked += [key for key in ("ticket", "code", "pin") if key in payload]
                if leaked:
                    problems.append(f"{where}: refused but the answer holds {leaked}")
                if not payload.get("detail"):
                    problems.append(f"{where}: refused without saying why")
    assert not problems, "\n".join(problems)
    assert len(seen) == 28  # every route of the API but /register and /login


def test_every_route_built_here_is_in_the_matrix() -> None:
    """A new route must be added to ENDPOINTS (only /register and /login need no account)."""
    from chargepin.fleet.api import (
        accounts,
        chargers,
        csms,
        factory,
        members,
        presence,
        tickets,
    )

    built = {
        (method, route.path)
        for router in (
            accounts.router,
            chargers.router,
            csms.router,
            factory.router,
            members.router,
            presence.router,
            tickets.router,
        )
        for route in router.routes
        for method in getattr(route, "methods", ())
    } - {("POST", "/register"), ("POST", "/login")}
    in_matrix = {
        (
            e.method,
            e.path.replace("{victim}", "{user_id}")
            .replace("{invitation}", "{invitation_id}")
            .split("?")[0],
        )
        for e in ENDPOINTS
    }
    assert built == in_matrix
