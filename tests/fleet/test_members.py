"""Invitations, members, revocation and phone-reported events over real HTTP."""

from __future__ import annotations

from fastapi.testclient import TestClient

from chargepin.clock import FakeClock
from tests.helpers.fleet_accounts import login
from tests.helpers.fleet_records import add_charger

PHONE = "D1:22:33:44:55:66"


def invite(client: TestClient, owner: dict[str, str], serial: str, email: str) -> str:
    response = client.post(f"/chargers/{serial}/invitations", json={"email": email}, headers=owner)
    assert response.status_code == 201, response.text
    return str(response.json()["code"])


def test_invite_accept_list_and_revoke(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner)
    code = invite(client, owner, charger.serial, "Guest@Example.com")
    assert len(code) >= 16  # 96 random bits, URL-safe

    guest = login(client, "guest@example.com")
    accepted = client.post("/invitations/accept", json={"code": code}, headers=guest)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"serial": charger.serial, "role": "user"}

    relayed = client.post(
        f"/chargers/{charger.serial}/phones",
        json=charger.bond_statement(PHONE, 2, b"guest-phone-ltk!"),
        headers=guest,
    )
    assert relayed.status_code == 200, relayed.text
    assert relayed.json()["address"] == PHONE
    listed = client.get(f"/chargers/{charger.serial}/members", headers=owner).json()
    assert [(m["email"], m["role"], m["revoked"]) for m in listed] == [
        ("owner@example.com", "owner", False),
        ("guest@example.com", "user", False),
    ]
    assert listed[1]["phones"] == [PHONE]

    guest_id = listed[1]["user_id"]
    revoked = client.delete(f"/chargers/{charger.serial}/members/{guest_id}", headers=owner)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["phones_to_remove"] == [PHONE]
    after = client.get(f"/chargers/{charger.serial}/members", headers=owner).json()
    assert after[1]["revoked"] is True and after[1]["revoked_at"] is not None

    # A revoked user sees nothing of the charger, and the old code does not bring them back.
    gone = client.post(f"/chargers/{charger.serial}/events", json={"kind": "locked"}, headers=guest)
    assert gone.status_code == 403
    assert "revoked" in gone.json()["detail"]
    assert client.post("/invitations/accept", json={"code": code}, headers=guest).status_code == 409

    # A new invitation does.
    again = invite(client, owner, charger.serial, "guest@example.com")
    back = client.post("/invitations/accept", json={"code": again}, headers=guest)
    assert back.status_code == 200, back.text
    members = client.get(f"/chargers/{charger.serial}/members", headers=owner).json()
    assert members[-1]["revoked"] is False


def test_invitation_for_another_account_is_403_naming_it(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner)
    code = invite(client, owner, charger.serial, "invited@example.com")
    other = login(client, "other@example.com")
    response = client.post("/invitations/accept", json={"code": code}, headers=other)
    assert response.status_code == 403
    assert "invited@example.com" in response.json()["detail"]
    assert client.get(f"/chargers/{charger.serial}/members", headers=other).status_code == 404
    # The code still works for the right account.
    invited = login(client, "invited@example.com")
    assert client.post("/invitations/accept", json={"code": code}, headers=invited).is_success


def test_expired_unknown_and_reused_codes(client: TestClient, fleet_clock: FakeClock) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner)
    guest = login(client, "guest@example.com")
    code = invite(client, owner, charger.serial, "guest@example.com")
    fleet_clock.advance(7 * 24 * 3600 + 1)
    expired = client.post("/invitations/accept", json={"code": code}, headers=guest)
    assert expired.status_code == 410
    assert "ask the owner for a new one" in expired.json()["detail"]

    unknown = client.post("/invitations/accept", json={"code": "not-a-code"}, headers=guest)
    assert unknown.status_code == 404

    fresh = invite(client, owner, charger.serial, "guest@example.com")
    assert client.post("/invitations/accept", json={"code": fresh}, headers=guest).is_success
    reused = client.post("/invitations/accept", json={"code": fresh}, headers=guest)
    assert reused.status_code == 409
    assert "works once" in reused.json()["detail"]
    assert client.post("/invitations/accept", json={"code": fresh}).status_code == 401


def test_a_newer_invitation_replaces_the_older_code(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner)
    first = invite(client, owner, charger.serial, "guest@example.com")
    second = invite(client, owner, charger.serial, "guest@example.com")
    guest = login(client, "guest@example.com")
    assert (
        client.post("/invitations/accept", json={"code": first}, headers=guest).status_code == 404
    )
    assert client.post("/invitations/accept", json={"code": second}, headers=guest).is_success


def test_the_owner_lists_and_withdraws_open_invitations(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner)
    listing = f"/chargers/{charger.serial}/invitations"
    code = invite(client, owner, charger.serial, "guest@example.com")
    other = client.post(listing, json={"email": "other@example.com"}, headers=owner).json()
    assert client.post(
        "/invitations/accept",
        json={"code": other["code"]},
        headers=login(client, "other@example.com"),
    ).is_success
    [open_one] = client.get(listing, headers=owner).json()
    assert open_one["email"] == "guest@example.com"
    assert "code" not in open_one  # only its hash is stored

    withdrawn = client.delete(f"{listing}/{open_one['id']}", headers=owner)
    assert withdrawn.status_code == 200
    assert withdrawn.json()["withdrawn_at"] is not None
    assert client.delete(f"{listing}/{open_one['id']}", headers=owner).status_code == 200  # again
    assert client.get(listing, headers=owner).json() == []
    guest = login(client, "guest@example.com")
    refused = client.post("/invitations/accept", json={"code": code}, headers=guest)
    assert refused.status_code == 404
    assert "withdrawn by the owner" in refused.json()["detail"]

    # The accepted one cannot be withdrawn: that person is a member now.
    conflict = client.delete(f"{listing}/{other['id']}", headers=owner)
    assert conflict.status_code == 409
    assert "revoke the member instead" in conflict.json()["detail"]
    missing = client.delete(f"{listing}/999999", headers=owner)
    assert missing.status_code == 404
    assert "list the open invitations" in missing.json()["detail"]


def test_expired_invitations_are_not_listed(client: TestClient, fleet_clock: FakeClock) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner)
    invite(client, owner, charger.serial, "guest@example.com")
    listing = f"/chargers/{charger.serial}/invitations"
    assert len(client.get(listing, headers=owner).json()) == 1
    fleet_clock.advance(7 * 24 * 3600 + 1)
    assert client.get(listing, headers=owner).json() == []


def test_owner_cannot_invite_members_or_revoke_themselves(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner)
    self_invite = client.post(
        f"/chargers/{charger.serial}/invitations",
        json={"email": "owner@example.com"},
        headers=owner,
    )
    assert self_invite.status_code == 409
    guest = login(client, "guest@example.com")
    code = invite(client, owner, charger.serial, "guest@example.com")
    client.post("/invitations/accept", json={"code": code}, headers=guest)
    twice = client.post(
        f"/chargers/{charger.serial}/invitations",
        json={"email": "guest@example.com"},
        headers=owner,
    )
    assert twice.status_code == 409
    myself = client.delete(f"/chargers/{charger.serial}/members/{charger.owner_id}", headers=owner)
    assert myself.status_code == 409
    assert "yourself" in myself.json()["detail"]
    assert (
        client.delete(f"/chargers/{charger.serial}/members/999999", headers=owner).status_code
        == 404
    )


def test_events_are_listed_newest_first_for_the_owner(
    client: TestClient, fleet_clock: FakeClock
) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner)
    for kind, detail in (("firmware", "6.11.2"), ("wrong_pin", "epoch 0"), ("locked", "300 s")):
        response = client.post(
            f"/chargers/{charger.serial}/events",
            json={"kind": kind, "detail": detail},
            headers=owner,
        )
        assert response.status_code == 201, response.text
        fleet_clock.advance(1)
    listed = client.get(f"/chargers/{charger.serial}/events", headers=owner).json()
    assert [e["kind"] for e in listed] == ["locked", "wrong_pin", "firmware"]
    limited = client.get(f"/chargers/{charger.serial}/events?limit=1", headers=owner).json()
    assert len(limited) == 1


def test_bad_events_get_422_with_the_reason(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner)
    unknown = client.post(
        f"/chargers/{charger.serial}/events", json={"kind": "reboot", "detail": ""}, headers=owner
    )
    assert unknown.status_code == 422
    assert "kind" in unknown.json()["detail"]
    address = client.post(
        f"/chargers/{charger.serial}/events",
        json={"kind": "phone_address", "detail": "F0:F1:F2:F3:F4:F5"},
        headers=owner,
    )
    assert address.status_code == 422
    assert address.json()["error"] == "phone_address_unattested"
    assert "bond statement" in address.json()["detail"]
    for bad, reason in (
        ({"statement": "01" + "00" * 35}, "did not make it"),
        ({"statement": "zz"}, "statement"),
        ({}, "statement"),
    ):
        refused = client.post(f"/chargers/{charger.serial}/phones", json=bad, headers=owner)
        assert refused.status_code == 422, refused.text
        assert reason in refused.text


def test_a_newer_bond_of_an_address_moves_it_to_whoever_re_paired(client: TestClient) -> None:
    """The charger's pairing count orders bonds of one address: a phone that re-paired under
    it is the one the charger knows now; a bond is the first relayer's (core.bond_statement)."""
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner)
    guest = login(client, "guest@example.com")
    code = invite(client, owner, charger.serial, "guest@example.com")
    assert client.post("/invitations/accept", json={"code": code}, headers=guest).is_success
    phones = f"/chargers/{charger.serial}/phones"

    def relay(headers: dict[str, str], sequence: int, ltk: bytes) -> int:
        body = charger.bond_statement(PHONE, sequence, ltk)
        return client.post(phones, json=body, headers=headers).status_code

    assert relay(owner, 3, b"owner-bond-ltk!!") == 200
    assert relay(owner, 3, b"owner-bond-ltk!!") == 200  # again: the same answer
    assert relay(guest, 7, b"owner-bond-ltk!!") == 409  # the owner's bond, read later
    assert relay(guest, 2, b"an-older-bond!!!") == 409  # an older bond of the address
    members = client.get(f"/chargers/{charger.serial}/members", headers=owner).json()
    assert [m["phones"] for m in members] == [[PHONE], []]
    assert relay(guest, 8, b"a-newer-bond!!!!") == 200  # re-paired under the address since
    assert relay(owner, 4, b"owner-bond-ltk!!") == 409
    members = client.get(f"/chargers/{charger.serial}/members", headers=owner).json()
    assert [m["phones"] for m in members] == [[], [PHONE]]
