"""Tickets, receipts and reconciliation over real HTTP; the charger's side from core."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chargepin.clock import FakeClock
from chargepin.core.limits import MAX_EPOCH, SERIAL_MAX_LENGTH
from chargepin.core.pin import Pin
from chargepin.core.tickets import Action, Receipt, Ticket, open_ticket, sign_receipt
from chargepin.fleet import pins
from tests.helpers.fleet_accounts import invited, login
from tests.helpers.fleet_records import MANDATORY, OPTIONAL, ChargerRecord, add_charger, charger_row


def ask(
    client: TestClient,
    headers: dict[str, str],
    charger: ChargerRecord,
    action: str,
    args: dict[str, str] | None = None,
    challenge: bytes | None = None,
) -> Any:
    body = {
        "challenge": (challenge or secrets.token_bytes(16)).hex(),
        "action": action,
        "args": args or {},
    }
    return client.post(f"/chargers/{charger.serial}/tickets", json=body, headers=headers)


def opened(client: TestClient, charger: ChargerRecord, response: Any, challenge: bytes) -> Ticket:
    """What the charger reads from the ticket, with its own secret and outstanding challenge."""
    assert response.status_code == 200, response.text
    now = client.app.state.fleet.clock.now()  # type: ignore[attr-defined]
    blob = bytes.fromhex(response.json()["ticket"])
    return open_ticket(charger.secret, charger.serial, blob, now, challenge)


def receipt(
    charger: ChargerRecord,
    challenge: bytes,
    action: Action,
    *,
    epoch: int,
    pin_enabled: bool,
    pin: Pin,
) -> str:
    """The receipt the charger signs after applying a ticket (charger/owner_actions.py)."""
    return sign_receipt(
        charger.secret,
        Receipt(
            serial=charger.serial,
            challenge=challenge,
            action=action,
            epoch=epoch,
            pin_enabled=pin_enabled,
            fingerprint=charger.fingerprint(pin),
        ),
    ).hex()


def committed_pin(client: TestClient, charger: ChargerRecord) -> Pin:
    vault = client.app.state.fleet.vault  # type: ignore[attr-defined]
    return pins.active_pin(vault, charger_row(client, charger.serial))


def member(client: TestClient, owner: dict[str, str], charger: ChargerRecord) -> dict[str, str]:
    """A logged-in invited user of `charger`."""
    return invited(client, owner, charger.serial, f"user-{secrets.token_hex(4)}@example.com")


def test_enable_pin_on_an_optional_charger_then_the_receipt_commits(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, OPTIONAL)
    challenge = secrets.token_bytes(16)
    response = ask(client, owner, charger, "enable_pin", challenge=challenge)
    ticket = opened(client, charger, response, challenge)
    assert (ticket.action, ticket.args, ticket.serial) == (Action.ENABLE_PIN, (), charger.serial)
    pending = charger_row(client, charger.serial).pending
    assert pending is not None
    assert (pending["action"], pending["pin_enabled"], pending["epoch"]) == ("enable_pin", True, 0)
    assert charger_row(client, charger.serial).pin_enabled is False

    signed = receipt(
        charger, challenge, Action.ENABLE_PIN, epoch=0, pin_enabled=True, pin=charger.pin(0)
    )
    committed = client.post(
        f"/chargers/{charger.serial}/receipts", json={"receipt": signed}, headers=owner
    )
    assert committed.status_code == 200, committed.text
    assert committed.json() == {"pin_enabled": True, "epoch": 0, "generation": 0}
    assert charger_row(client, charger.serial).pending is None
    # The same receipt again is harmless.
    again = client.post(
        f"/chargers/{charger.serial}/receipts", json={"receipt": signed}, headers=owner
    )
    assert again.json() == {"pin_enabled": True, "epoch": 0, "generation": 0}


def test_enable_pin_with_a_custom_pin(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, OPTIONAL)
    challenge = secrets.token_bytes(16)
    response = ask(client, owner, charger, "enable_pin", {"pin": "480913"}, challenge)
    assert opened(client, charger, response, challenge).arg("pin") == "480913"
    signed = receipt(
        charger, challenge, Action.ENABLE_PIN, epoch=0, pin_enabled=True, pin=Pin("480913")
    )
    client.post(f"/chargers/{charger.serial}/receipts", json={"receipt": signed}, headers=owner)
    assert committed_pin(client, charger) == Pin("480913")


def test_change_pin_without_arguments_moves_to_the_next_epoch(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    challenge = secrets.token_bytes(16)
    ticket = opened(
        client, charger, ask(client, owner, charger, "change_pin", challenge=challenge), challenge
    )
    assert ticket.args == (("next_epoch", "1"),)
    assert charger_row(client, charger.serial).pending["epoch"] == 1  # type: ignore[index]
    signed = receipt(
        charger, challenge, Action.CHANGE_PIN, epoch=1, pin_enabled=True, pin=charger.pin(1)
    )
    response = client.post(
        f"/chargers/{charger.serial}/receipts", json={"receipt": signed}, headers=owner
    )
    assert response.json() == {"pin_enabled": True, "epoch": 1, "generation": 0}
    assert committed_pin(client, charger) == charger.pin(1)


def test_change_pin_to_a_custom_pin_travels_sealed_and_commits(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    challenge = secrets.token_bytes(16)
    response = ask(client, owner, charger, "change_pin", {"pin": "730418"}, challenge)
    assert "730418" not in response.text
    assert opened(client, charger, response, challenge).arg("pin") == "730418"
    row = charger_row(client, charger.serial)
    assert row.pending is not None and row.pending["custom_pin_ct"]
    assert "730418" not in str(row.pending)
    signed = receipt(
        charger, challenge, Action.CHANGE_PIN, epoch=0, pin_enabled=True, pin=Pin("730418")
    )
    client.post(f"/chargers/{charger.serial}/receipts", json={"receipt": signed}, headers=owner)
    assert committed_pin(client, charger) == Pin("730418")


@pytest.mark.parametrize(
    ("pin", "reason"),
    [
        ("111111", "all digits are the same"),
        ("123456", "count straight up"),
        ("121212", "repeats"),
    ],
)
def test_weak_custom_pin_is_422_with_the_reason(client: TestClient, pin: str, reason: str) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    response = ask(client, owner, charger, "change_pin", {"pin": pin})
    assert response.status_code == 422
    assert reason in response.json()["detail"]
    assert "choose another PIN" in response.json()["detail"]
    assert charger_row(client, charger.serial).pending is None


def test_malformed_arguments_are_422(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    assert ask(client, owner, charger, "change_pin", {"pin": "12ab56"}).status_code == 422
    both = ask(client, owner, charger, "change_pin", {"pin": "730418", "next_epoch": "1"})
    assert both.status_code == 422 and "exactly one of" in both.json()["detail"]
    assert ask(client, owner, charger, "remove_phone").status_code == 422
    assert ask(client, owner, charger, "list_phones", {"x": "1"}).status_code == 422
    bad_challenge = client.post(
        f"/chargers/{charger.serial}/tickets",
        json={"challenge": "00" * 15, "action": "list_phones"},
        headers=owner,
    )
    assert bad_challenge.status_code == 422 and "challenge" in bad_challenge.json()["detail"]
    unknown = client.post(
        f"/chargers/{charger.serial}/tickets",
        json={"challenge": "00" * 16, "action": "open_door"},
        headers=owner,
    )
    assert unknown.status_code == 422


def test_the_pin_class_decides_with_the_reason(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    mandatory = add_charger(client, owner, MANDATORY)
    optional = add_charger(client, owner, OPTIONAL)
    off = ask(client, owner, mandatory, "disable_pin")
    assert off.status_code == 409 and "cannot be switched off" in off.json()["detail"]
    on = ask(client, owner, mandatory, "enable_pin")
    assert on.status_code == 409 and "already on" in on.json()["detail"]
    change = ask(client, owner, optional, "change_pin")
    assert change.status_code == 409 and "update the charger" in change.json()["detail"]
    assert ask(client, owner, optional, "disable_pin").status_code == 409  # already off


def test_roles_decide_which_tickets(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    user = member(client, owner, charger)
    for action, args in (
        ("change_pin", {}),
        ("change_pin", {"pin": "730418"}),
        ("enable_pin", {}),
        ("disable_pin", {}),
        ("remove_phone", {"all": "1"}),
    ):
        refused = ask(client, user, charger, action, args)
        assert refused.status_code == 403, (action, refused.text)
        assert "ticket" not in refused.json()
        assert "owner" in refused.json()["detail"]
    challenge = secrets.token_bytes(16)
    listed = opened(
        client, charger, ask(client, user, charger, "list_phones", challenge=challenge), challenge
    )
    assert listed.action is Action.LIST_PHONES
    challenge = secrets.token_bytes(16)
    removal = ask(
        client, owner, charger, "remove_phone", {"address": "d1:22:33:44:55:66"}, challenge
    )
    assert opened(client, charger, removal, challenge).arg("address") == "D1:22:33:44:55:66"
    assert charger_row(client, charger.serial).pending is None  # no PIN change pending


def test_tickets_need_a_current_app(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    old = {**owner, "X-App-Version": "1.9.0"}
    response = ask(client, old, charger, "change_pin")
    assert response.status_code == 426
    assert "update the app" in response.json()["detail"]


def test_a_ticket_expires_after_two_minutes(client: TestClient, fleet_clock: FakeClock) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    challenge = secrets.token_bytes(16)
    response = ask(client, owner, charger, "list_phones", challenge=challenge)
    fleet_clock.advance(121)
    from chargepin.core.errors import TicketRejected

    with pytest.raises(TicketRejected, match="expired"):
        opened(client, charger, response, challenge)


def test_a_tampered_or_foreign_receipt_changes_nothing(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    other = add_charger(client, owner, MANDATORY)
    challenge = secrets.token_bytes(16)
    ask(client, owner, charger, "change_pin", challenge=challenge)
    before = charger_row(client, charger.serial)
    signed = bytearray.fromhex(
        receipt(
            charger, challenge, Action.CHANGE_PIN, epoch=1, pin_enabled=True, pin=charger.pin(1)
        )
    )
    signed[5] ^= 0x01
    tampered = client.post(
        f"/chargers/{charger.serial}/receipts", json={"receipt": signed.hex()}, headers=owner
    )
    assert tampered.status_code == 422
    assert "does not verify" in tampered.json()["detail"]
    foreign = receipt(
        other, challenge, Action.CHANGE_PIN, epoch=1, pin_enabled=True, pin=other.pin(1)
    )
    assert (
        client.post(
            f"/chargers/{charger.serial}/receipts", json={"receipt": foreign}, headers=owner
        ).status_code
        == 422
    )
    after = charger_row(client, charger.serial)
    assert (after.epoch, after.pin_enabled, after.custom_pin_ct, after.pending) == (
        before.epoch,
        before.pin_enabled,
        before.custom_pin_ct,
        before.pending,
    )


def test_reconcile_commits_a_change_whose_receipt_never_arrived(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    ask(client, owner, charger, "change_pin", {"pin": "730418"})
    # Before the charger applied it: the committed PIN is live, the change stays pending.
    still = reconcile(client, owner, charger, 0, charger.pin(0), True)
    assert still == {"pin_enabled": True, "epoch": 0, "generation": 0, "live": "committed"}
    assert charger_row(client, charger.serial).pending is not None
    # The charger applied it and the app crashed before handing in the receipt.
    applied = reconcile(client, owner, charger, 0, Pin("730418"), True)
    assert applied == {"pin_enabled": True, "epoch": 0, "generation": 0, "live": "pending"}
    assert charger_row(client, charger.serial).pending is None
    assert committed_pin(client, charger) == Pin("730418")


def test_reconcile_commits_a_next_epoch_change_even_after_later_rotations(
    client: TestClient,
) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    user = member(client, owner, charger)
    ask(client, owner, charger, "change_pin")
    # Applied (epoch 1), then two failed attempts rotated the hardened charger to epoch 3.
    seen = reconcile(client, user, charger, 3, charger.pin(3), True)
    assert seen == {"pin_enabled": True, "epoch": 3, "generation": 0, "live": "pending"}
    assert committed_pin(client, charger) == charger.pin(3)


def test_reconcile_follows_rotation_and_drops_a_custom_pin(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    challenge = secrets.token_bytes(16)
    ask(client, owner, charger, "change_pin", {"pin": "730418"}, challenge)
    signed = receipt(
        charger, challenge, Action.CHANGE_PIN, epoch=0, pin_enabled=True, pin=Pin("730418")
    )
    client.post(f"/chargers/{charger.serial}/receipts", json={"receipt": signed}, headers=owner)
    # A failed attempt: the charger moves to epoch 1 and forgets the custom PIN.
    moved = reconcile(client, owner, charger, 1, charger.pin(1), True)
    assert moved == {"pin_enabled": True, "epoch": 1, "generation": 0, "live": "committed"}
    assert committed_pin(client, charger) == charger.pin(1)


def test_reconcile_with_an_unknown_fingerprint_changes_nothing(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    unknown = reconcile(client, owner, charger, 5, Pin("730418"), True)
    assert unknown == {"pin_enabled": True, "epoch": 0, "generation": 0, "live": "unknown"}


def test_an_epoch_the_air_cannot_carry_or_a_serial_no_label_has_is_422(
    client: TestClient,
) -> None:
    """The bounds are the wire's (core.limits): a u32 epoch, a serial of 1 to 32 characters."""
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    report = {**charger.open_info(0, charger.pin(0)), "epoch": MAX_EPOCH + 1}
    response = client.post(f"/chargers/{charger.serial}/reconcile", json=report, headers=owner)
    assert response.status_code == 422
    assert f"epoch: Input should be less than or equal to {MAX_EPOCH}" in response.json()["detail"]
    for serial in ("X" * (SERIAL_MAX_LENGTH + 1), "CP 0001"):
        refused = client.post(f"/chargers/{serial}/reconcile", json=report, headers=owner)
        assert refused.status_code == 422
        assert "serial" in refused.json()["detail"]


@pytest.mark.parametrize("epoch", [2**63 - 1, 2**63, 2**64])
def test_a_member_reconciling_an_epoch_of_2_to_the_63_gets_422_not_a_200_then_an_overflow(
    client: TestClient, epoch: int
) -> None:
    """Issue 9: `epoch = 2**63` raised OverflowError after the 200 was sent (and 2**63 - 1 was
    committed). Now an epoch past the u32 the air carries is 422, before any look-up or write."""
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    user = member(client, owner, charger)
    report = {**charger.open_info(0, charger.pin(0)), "epoch": epoch}
    response = client.post(f"/chargers/{charger.serial}/reconcile", json=report, headers=user)
    assert response.status_code == 422, response.text
    assert f"less than or equal to {MAX_EPOCH}" in response.json()["detail"]
    assert charger_row(client, charger.serial).epoch == 0


def test_a_receipt_from_a_newer_epoch_is_taken_as_the_truth(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    challenge = secrets.token_bytes(16)
    ask(client, owner, charger, "remove_phone", {"all": "1"}, challenge)
    signed = receipt(
        charger, challenge, Action.REMOVE_PHONE, epoch=4, pin_enabled=True, pin=charger.pin(4)
    )
    response = client.post(
        f"/chargers/{charger.serial}/receipts", json={"receipt": signed}, headers=owner
    )
    assert response.json() == {"pin_enabled": True, "epoch": 4, "generation": 0}


def reconcile(
    client: TestClient,
    headers: dict[str, str],
    charger: ChargerRecord,
    epoch: int,
    pin: Pin,
    pin_enabled: bool,
) -> Any:
    """Relay what the charger's open info shows, attested: epoch, PIN fingerprint, on/off."""
    response = client.post(
        f"/chargers/{charger.serial}/reconcile",
        json=charger.open_info(epoch, pin, pin_enabled),
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_a_member_cannot_corrupt_the_pin_shown_to_everyone_by_reconciling(
    client: TestClient,
) -> None:
    """Issue 9: an invited user relayed {epoch 2**63-1, the live fingerprint, on} and the fleet
    committed that epoch; after one failed attempt on the charger Charger Info showed a stale PIN
    and stayed wrong. Now only what the charger attested is believed."""
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    user = member(client, owner, charger)
    genuine = charger.open_info(0, charger.pin(0))
    for forged in (
        {**genuine, "epoch": MAX_EPOCH},  # the live tag, another epoch
        {**genuine, "pin_enabled": False},  # the live tag, the PIN off
        {**genuine, "attestation": "00" * 16},  # made up
        {**charger.open_info(0, charger.pin(0)), "fingerprint": "00" * 8},
    ):
        refused = client.post(f"/chargers/{charger.serial}/reconcile", json=forged, headers=user)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"] == "attestation_invalid"
    without = {k: v for k, v in genuine.items() if k != "attestation"}
    assert (
        client.post(f"/chargers/{charger.serial}/reconcile", json=without, headers=user)
    ).status_code == 422
    info = client.get(f"/chargers/{charger.serial}", headers=owner).json()
    assert (info["epoch"], info["pin"]) == (0, charger.pin(0).digits)
    # An old attestation claims an old epoch: the fleet never moves back.
    reconcile(client, user, charger, 3, charger.pin(3), True)
    old = reconcile(client, user, charger, 1, charger.pin(1), True)
    assert (old["epoch"], old["live"]) == (3, "unknown")
