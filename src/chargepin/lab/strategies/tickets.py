"""Owner tickets as the charger receives them: sealed, altered, foreign, junk, and any payload
sealed with the charger's key (docs/PROTOCOL.md, "Tickets")."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from chargepin.core.errors import TicketRejected
from chargepin.core.limits import CHALLENGE_SIZE, SERIAL_RE
from chargepin.core.pin import weakness
from chargepin.core.tickets import (
    NONCE_SIZE,
    Action,
    Ticket,
    issue_ticket,
    open_ticket,
    seal_payload,
    seal_ticket,
)
from chargepin.lab.strategies.json_texts import JSON_SCALARS, JSON_VALUES, json_texts
from chargepin.lab.strategies.mutations import mutations
from chargepin.lab.strategies.oracle import outcome

TICKET_REASONS = frozenset({"malformed", "foreign", "tampered", "expired", "challenge", "bad_args"})
"""Every reason open_ticket may give (docs/PROTOCOL.md, "Tickets")."""
TICKET_REASONS_FOR_JUNK = frozenset({"malformed", "foreign", "tampered"})
"""What the opener may say about bytes the fleet service did not seal as they are."""


SECRETS = st.binary(min_size=32, max_size=32)
SERIALS = st.one_of(
    st.from_regex(SERIAL_RE, fullmatch=True),
    st.text(min_size=1, max_size=30).filter(lambda text: len(text.encode()) <= 255),
)
"""Label serials, and any text a ticket header may name (open_ticket takes up to 255 octets)."""
STRONG_PINS = st.integers(0, 999_999).map(lambda n: f"{n:06d}").filter(lambda d: not weakness(d))
ADDRESSES = st.tuples(st.binary(min_size=6, max_size=6), st.booleans(), st.booleans()).map(
    lambda item: (
        ":".join(f"{octet:02x}" if item[1] else f"{octet:02X}" for octet in item[0])
        + ("/P" if item[2] else "")
    )
)
CHALLENGES = st.binary(min_size=CHALLENGE_SIZE, max_size=CHALLENGE_SIZE)
NOW = st.integers(1_700_000_000, 2_000_000_000)


def ticket_args(action: Action) -> st.SearchStrategy[dict[str, str]]:
    """Arguments docs/PROTOCOL.md allows for `action`."""
    if action is Action.ENABLE_PIN:
        return st.one_of(st.just({}), STRONG_PINS.map(lambda pin: {"pin": pin}))
    if action is Action.CHANGE_PIN:
        one = st.one_of(STRONG_PINS.map(lambda pin: {"pin": pin}), st.just({"next_epoch": "1"}))
        forget = st.sampled_from([{}, {"forget_bonds": "1"}])
        return st.tuples(one, forget).map(lambda pair: {**pair[0], **pair[1]})
    if action is Action.REMOVE_PHONE:
        return st.one_of(ADDRESSES.map(lambda address: {"address": address}), st.just({"all": "1"}))
    return st.just({})


@st.composite
def tickets(draw: st.DrawFn, serial: str | None = None) -> Ticket:
    """A ticket the fleet service may issue, for `serial` or any serial."""
    action = draw(st.sampled_from(Action))
    return issue_ticket(
        serial if serial is not None else draw(SERIALS),
        draw(CHALLENGES),
        action,
        draw(ticket_args(action)),
        now=draw(NOW),
        lifetime=draw(st.sampled_from([120, 1, 3600])),
    )


@dataclass(frozen=True)
class TicketCase:
    """One ticket write reaching a charger (`serial`, `secret`) at `now`.

    `kind`: sealed (as issued), altered (a sealed one changed), other-charger, other-secret,
    junk (raw bytes), payload (any payload sealed with this charger's key). `ticket` is what
    was sealed; `challenge` the one the charger has outstanding (None: none).
    """

    kind: str
    serial: str
    secret: bytes
    blob: bytes
    now: float
    challenge: bytes | None
    ticket: Ticket | None = None


def _ticket_fields(serial: str, challenge: bytes, now: int) -> st.SearchStrategy[dict[str, Any]]:
    """Ticket payload objects: each field right or wrong, some missing, some extra."""
    action = st.sampled_from(Action).map(str)
    right: dict[str, st.SearchStrategy[Any]] = {
        "a": action,
        "c": st.just(challenge.hex()),
        "e": st.integers(now - 200, now + 200),
        "p": st.sampled_from(Action).flatmap(ticket_args),
        "s": st.just(serial),
    }
    wrong: dict[str, st.SearchStrategy[Any]] = {
        "a": st.one_of(JSON_VALUES, st.sampled_from([a.value.upper() for a in Action])),
        "c": st.one_of(JSON_VALUES, CHALLENGES.map(lambda c: c.hex().upper())),
        "e": st.one_of(JSON_VALUES, st.sampled_from([2**63, -1, 1e18, True])),
        "p": st.one_of(JSON_VALUES, st.dictionaries(st.text(max_size=12), JSON_VALUES)),
        "s": st.one_of(JSON_VALUES, SERIALS),
    }

    @st.composite
    def fields(draw: st.DrawFn) -> dict[str, Any]:
        built: dict[str, Any] = {}
        for name in right:
            kind = draw(st.sampled_from(["right", "right", "wrong", "missing"]), label=name)
            if kind != "missing":
                built[name] = draw(right[name] if kind == "right" else wrong[name], label=name)
        built.update(draw(st.dictionaries(st.text(max_size=4), JSON_SCALARS, max_size=2)))
        return built

    return fields()


@st.composite
def ticket_cases(draw: st.DrawFn) -> TicketCase:
    secret = draw(SECRETS, label="secret")
    ticket = draw(tickets(), label="ticket")
    serial = ticket.serial
    opened_at = ticket.expires_at + draw(st.integers(-200, 200), label="opened after expiry")
    challenge = draw(
        st.one_of(st.just(ticket.challenge), CHALLENGES, st.none()), label="outstanding"
    )
    nonce = draw(st.binary(min_size=NONCE_SIZE, max_size=NONCE_SIZE), label="nonce")
    sealed = seal_ticket(secret, ticket, nonce)
    kind = draw(
        st.sampled_from(["sealed", "altered", "other-charger", "other-secret", "junk", "payload"])
    )
    blob = sealed
    if kind == "altered":
        blob = draw(mutations(sealed), label="altered")
    elif kind == "other-charger":
        other = draw(SERIALS.filter(lambda text: text != serial), label="other serial")
        blob = seal_ticket(secret, dataclasses.replace(ticket, serial=other), nonce)
    elif kind == "other-secret":
        blob = seal_ticket(draw(SECRETS.filter(lambda s: s != secret)), ticket, nonce)
    elif kind == "junk":
        blob = draw(st.binary(max_size=600), label="junk")
    elif kind == "payload":
        fields = _ticket_fields(serial, ticket.challenge, ticket.expires_at)
        payload = draw(
            st.one_of(
                fields.map(lambda value: json.dumps(value).encode()),
                json_texts().map(str.encode),
                st.binary(max_size=200),
            ),
            label="payload",
        )
        blob = seal_payload(secret, serial, payload, nonce)
    return TicketCase(kind, serial, secret, blob, opened_at, challenge, ticket)


def check_ticket(case: TicketCase) -> None:
    """open_ticket answers any bytes with a Ticket or TicketRejected; only a sealed, unexpired
    ticket for the outstanding challenge opens, and it opens as it was issued."""
    opened = outcome(
        lambda: open_ticket(case.secret, case.serial, case.blob, case.now, case.challenge),
        TicketRejected,
    )
    if isinstance(opened, TicketRejected):
        assert opened.reason in TICKET_REASONS, f"unknown reason {opened.reason!r}"
        assert opened.detail.strip(), "a refusal without a detail"
    result: Ticket | str = opened.reason if isinstance(opened, TicketRejected) else opened
    ticket = case.ticket
    assert ticket is not None
    if case.kind == "sealed":
        if case.now > ticket.expires_at:
            assert result == "expired", result
        elif case.challenge != ticket.challenge:
            assert result == "challenge", result
        else:
            assert result == ticket, f"issued {ticket!r}, opened {result!r}"
    elif case.kind == "other-charger":
        assert result == "foreign", result
    elif case.kind == "other-secret":
        assert result == "tampered", result
    elif case.kind in ("altered", "junk"):
        assert result in TICKET_REASONS_FOR_JUNK, f"altered ticket opened: {result!r}"
    elif isinstance(result, Ticket):
        assert result.serial == case.serial
        assert result.challenge == case.challenge, "a ticket for another challenge opened"
        assert case.now <= result.expires_at, "an expired ticket opened"
