"""The web app's security over real HTTP through the ASGI app (docs/APP.md, "Security").

Cookies, CSRF, headers, who may see which charger page, the PIN only after Show PIN, bad input
answered on the page, markup in names escaped. The browser tests (tests/fleet/test_web_browser.py)
drive the same pages in Chromium.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select

from chargepin.clock import FakeClock
from chargepin.core import bond_statement
from chargepin.core.bond_statement import BondedPhone
from chargepin.core.epochs import epoch_pin
from chargepin.core.ocpp_events import SecurityEventType
from chargepin.core.pin import weakness
from chargepin.core.policy import FirmwareVersion
from chargepin.fleet import overview
from chargepin.fleet.csms import events, gateways, outbox, registry
from chargepin.fleet.deps import user_for_digest
from chargepin.fleet.models import Charger, CsmsCommand, PinReveal, Token
from chargepin.fleet.security import token_digest
from chargepin.fleet.times import utc_now
from chargepin.fleet.web.pages import PAGE_SIZE, WEB_APP_VERSION
from chargepin.fleet.web.sessions import SESSION_COOKIE
from tests.helpers.fleet_accounts import PASSWORD, invited, login
from tests.helpers.fleet_factory import MANDATORY, OPTIONAL, Spec, provision
from tests.helpers.web_app import browser_for, csrf_of, origin_of, post_form, sign_up

OWNER = "owner@example.com"


def commissioned(client: TestClient, spec: Spec = MANDATORY) -> tuple[TestClient, str, str]:
    """An owner's browser, signed up, that commissioned a new charger by its sticker code:
    (browser, serial, the PIN of epoch 0)."""
    browser, made = commissioned_charger(client, spec)
    return browser, made.serial, epoch_pin(made.secret, made.serial, 0).digits


def commissioned_charger(client: TestClient, spec: Spec = MANDATORY) -> tuple[TestClient, Any]:
    """As `commissioned`, with the charger as the factory made it (its secret too)."""
    (made,) = provision(client, spec)
    browser = browser_for(client)
    sign_up(browser, OWNER)
    answer = post_form(
        browser, "/app/commission", {"code": made.sticker.encode()}, from_page="/app/commission"
    )
    assert answer.status_code == 200, answer.text
    return browser, made


def reported(
    client: TestClient, charger_id: int, kind: str, tech_info: str, now: dt.datetime
) -> None:
    """A security event as the CSMS stores one the charger sent (csms/events.py's writer)."""
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    event = events.IncomingEvent(charger_id, kind, now.isoformat(), tech_info, None, now)
    assert events.write_batch(fleet.engine, [event]) == [True]


def reveals(client: TestClient) -> list[PinReveal]:
    with client.app.state.fleet.sessions() as db:  # type: ignore[attr-defined]
        return list(db.scalars(select(PinReveal).order_by(PinReveal.id)))


def test_the_session_cookie_is_httponly_lax_scoped_and_stored_hashed(client: TestClient) -> None:
    browser = browser_for(client)
    answer = sign_up(browser, OWNER)

    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=lax", "path=/app"} <= flags
    assert "secure" not in flags  # plain http on loopback: a Secure cookie would not come back
    token = browser.cookies[SESSION_COOKIE]
    with client.app.state.fleet.sessions() as db:  # type: ignore[attr-defined]
        stored = list(db.scalars(select(Token.token_hash)))
    assert stored == [token_digest(token)] and token.encode() not in stored
    assert answer.headers["location"] == "/app/chargers" and token not in answer.headers["location"]
    assert "My chargers" in browser.get("/app/chargers").text


def test_the_session_cookie_is_secure_over_https(client: TestClient) -> None:
    browser = browser_for(client, "https://testserver")
    answer = sign_up(browser, OWNER)

    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
    assert "secure" in {part.strip().lower() for part in cookie.split(";")}
    assert answer.headers["strict-transport-security"].startswith("max-age=")


def test_every_answer_under_app_carries_the_security_headers(client: TestClient) -> None:
    browser = browser_for(client)
    sign_up(browser, OWNER)
    for path in ("/app/signin", "/app/chargers", "/app/commission", "/app/static/app.css"):
        answer = browser.get(path)
        assert answer.status_code == 200, path
        csp = answer.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
        assert answer.headers["x-content-type-options"] == "nosniff", path
        assert answer.headers["referrer-policy"] == "same-origin", path
        assert answer.headers["x-frame-options"] == "DENY", path
    assert browser.get("/app/chargers").headers["cache-control"] == "no-store"
    page = browser.get("/app/chargers").text
    assert "<script" not in page and "style=" not in page and "<style" not in page


def test_a_state_change_without_the_right_csrf_token_or_origin_is_refused(
    client: TestClient,
) -> None:
    (made,) = provision(client)
    browser = browser_for(client)
    sign_up(browser, OWNER)
    other = browser_for(client)
    sign_up(other, "other@example.com")
    sticker = {"code": made.sticker.encode()}
    good = csrf_of(browser.get("/app/commission"))

    attempts = {
        "no token": {**sticker},
        "a wrong token": {**sticker, "csrf": "00" * 32},
        "another session's token": {**sticker, "csrf": csrf_of(other.get("/app/commission"))},
        "the token cut short": {**sticker, "csrf": good[:-1]},
    }
    for what, fields in attempts.items():
        answer = browser.post("/app/commission", data=fields, headers=origin_of(browser))
        assert answer.status_code == 403, what
        assert "reload the page" in answer.text, what
    foreign = browser.post(
        "/app/commission",
        data={**sticker, "csrf": good},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403
    cross_site = browser.post(
        "/app/commission", data={**sticker, "csrf": good}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross_site.status_code == 403
    assert "No charger yet" in browser.get("/app/chargers").text  # nothing was claimed
    # Sign out is a state change too: refused without the token, the session lives on.
    assert browser.post("/app/signout", headers=origin_of(browser)).status_code == 403
    assert browser.get("/app/chargers", follow_redirects=False).status_code == 200
    # And the same request with the page's token and our origin goes through.
    done = browser.post(
        "/app/commission", data={**sticker, "csrf": good}, headers=origin_of(browser)
    )
    assert done.status_code == 200 and "This charger is yours" in done.text


def test_the_sign_in_form_needs_its_own_token_too(client: TestClient) -> None:
    """Login CSRF: another site must not sign a browser into the attacker's account."""
    login(client, "attacker@example.com")
    victim = browser_for(client)
    forged = victim.post(
        "/app/signin",
        data={"email": "attacker@example.com", "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert forged.status_code == 403 and SESSION_COOKIE not in victim.cookies
    no_token = victim.post(
        "/app/signin",
        data={"email": "attacker@example.com", "password": PASSWORD},
        headers=origin_of(victim),
        follow_redirects=False,
    )
    assert no_token.status_code == 403 and SESSION_COOKIE not in victim.cookies


def test_strangers_members_and_revoked_users_see_only_what_is_theirs(client: TestClient) -> None:
    owner, serial, pin = commissioned(client)
    owner_api = login(client, OWNER)
    seen = len(reveals(client))
    stranger = browser_for(client)
    sign_up(stranger, "stranger@example.com")

    for path in (f"/app/chargers/{serial}", f"/app/chargers/{serial}/events"):
        page = stranger.get(path)
        assert page.status_code == 404, path
        assert MANDATORY.model not in page.text and pin not in page.text
    token = csrf_of(stranger.get("/app/chargers"))
    shown = stranger.post(
        f"/app/chargers/{serial}/pin", data={"csrf": token}, headers=origin_of(stranger)
    )
    assert shown.status_code == 404 and pin not in shown.text
    assert len(reveals(client)) == seen  # nothing revealed, nothing audited
    # A serial that no label carries: the same page, nothing looked up.
    assert stranger.get("/app/chargers/" + "A" * 40).status_code == 404

    invited(client, owner_api, serial, "member@example.com")
    member = browser_for(client)
    signed_in = post_form(
        member,
        "/app/signin",
        {"email": "member@example.com", "password": PASSWORD},
        from_page="/app/signin",
    )
    assert signed_in.status_code == 303
    info = member.get(f"/app/chargers/{serial}")
    assert info.status_code == 200 and "Show PIN" in info.text
    assert "Who saw the PIN" not in info.text and OWNER not in info.text  # the audit is the owner's
    assert member.get(f"/app/chargers/{serial}/events").status_code == 403
    listed = member.get("/app/chargers").text
    assert serial in listed and "online" not in listed  # the connection is the owner's

    member_id = client.get("/me", headers=login(client, "member@example.com")).json()["id"]
    revoked = client.delete(f"/chargers/{serial}/members/{member_id}", headers=owner_api)
    assert revoked.status_code == 200, revoked.text
    after = member.get(f"/app/chargers/{serial}")
    assert after.status_code == 403 and "revoked" in after.text
    token = csrf_of(member.get("/app/chargers"))
    again = member.post(
        f"/app/chargers/{serial}/pin", data={"csrf": token}, headers=origin_of(member)
    )
    assert again.status_code == 403 and pin not in again.text
    assert serial not in member.get("/app/chargers").text
    assert owner.get(f"/app/chargers/{serial}").status_code == 200


def test_the_pin_is_in_charger_info_only_after_show_pin_and_is_audited(client: TestClient) -> None:
    browser, serial, pin = commissioned(client)
    assert [(r.epoch, r.app_version) for r in reveals(client)] == [(0, WEB_APP_VERSION)]

    page = browser.get(f"/app/chargers/{serial}")
    assert page.status_code == 200 and "Show PIN" in page.text
    assert pin not in page.text
    assert "mandatory" in page.text and MANDATORY.firmware in page.text
    assert len(reveals(client)) == 1  # looking at Charger Info reveals nothing

    shown = browser.post(
        f"/app/chargers/{serial}/pin", data={"csrf": csrf_of(page)}, headers=origin_of(browser)
    )
    assert shown.status_code == 200 and pin in shown.text
    assert shown.headers["cache-control"] == "no-store"
    assert len(reveals(client)) == 2
    assert shown.text.count(WEB_APP_VERSION) == 2  # both reveals in the owner's audit
    assert pin not in browser.get(f"/app/chargers/{serial}").text


def test_an_optional_charger_has_no_pin_to_show(client: TestClient) -> None:
    browser, serial, pin = commissioned(client, OPTIONAL)
    page = browser.get(f"/app/chargers/{serial}")
    assert "PIN not enabled" in page.text and "Show PIN" not in page.text
    shown = browser.post(
        f"/app/chargers/{serial}/pin", data={"csrf": csrf_of(page)}, headers=origin_of(browser)
    )
    assert shown.status_code == 409 and pin not in shown.text and reveals(client) == []


def test_bad_input_is_said_on_the_page_and_keeps_what_was_typed_but_the_password(
    client: TestClient,
) -> None:
    browser = browser_for(client)
    secret = "not-a-good-password-123"
    bad_email = post_form(
        browser,
        "/app/signup",
        {"email": "owner-at-example", "password": secret},
        from_page="/app/signup",
    )
    assert bad_email.status_code == 422 and "E-mail" in bad_email.text
    assert 'value="owner-at-example"' in bad_email.text and secret not in bad_email.text

    short = post_form(
        browser, "/app/signup", {"email": OWNER, "password": "short"}, from_page="/app/signup"
    )
    assert short.status_code == 422 and "Password: String should have at least" in short.text
    assert f'value="{OWNER}"' in short.text

    sign_up(browser, OWNER)
    other = browser_for(client)
    wrong = post_form(
        other, "/app/signin", {"email": OWNER, "password": secret}, from_page="/app/signin"
    )
    assert wrong.status_code == 401 and f'value="{OWNER}"' in wrong.text
    assert secret not in wrong.text and SESSION_COOKIE not in other.cookies

    (made,) = provision(client)
    typo = made.sticker.encode()[:-1] + ("0" if made.sticker.encode()[-1] != "0" else "1")
    refused = post_form(browser, "/app/commission", {"code": typo}, from_page="/app/commission")
    assert refused.status_code == 403 and f'value="{typo}"' in refused.text
    garbage = post_form(browser, "/app/commission", {"code": "hello"}, from_page="/app/commission")
    assert garbage.status_code == 422 and 'value="hello"' in garbage.text


def test_a_claimed_sticker_says_to_ask_the_owner_for_an_invitation(client: TestClient) -> None:
    (made,) = provision(client)
    first = browser_for(client)
    sign_up(first, OWNER)
    code = made.sticker.encode()
    assert post_form(
        first, "/app/commission", {"code": code}, from_page="/app/commission"
    ).is_success
    second = browser_for(client)
    sign_up(second, "neighbour@example.com")

    answer = post_form(second, "/app/commission", {"code": code}, from_page="/app/commission")

    assert answer.status_code == 409 and "invite" in answer.text
    assert made.serial not in second.get("/app/chargers").text


def test_markup_in_a_model_name_is_shown_as_text(client: TestClient) -> None:
    spec = Spec("<img src=x onerror=alert(1)>", MANDATORY.firmware, MANDATORY.produced)
    browser, serial, _pin = commissioned(client, spec)
    for path in ("/app/chargers", f"/app/chargers/{serial}"):
        page = browser.get(path).text
        assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page, path


def test_my_chargers_shows_the_connection_and_a_reported_lockout(
    client: TestClient, fleet_clock: FakeClock
) -> None:
    browser, serial, _pin = commissioned(client)
    page = browser.get("/app/chargers").text
    assert serial in page and "mandatory" in page and "offline" in page and "locked" not in page

    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    now = utc_now(fleet_clock)
    with fleet.sessions() as db, db.begin():
        charger_id = db.scalar(select(Charger.id).where(Charger.serial == serial))
        gateways.beat(db, "process-1", gateways.wall_now())  # a live gateway holds it
        registry.take(db, charger_id, "connection-1", "process-1", now)
    info = json.dumps({"failures": 5, "duration": 300, "phone": "aa:bb:cc:dd:ee:ff"})
    reported(client, charger_id, SecurityEventType.PIN_LOCKOUT, info, now)
    page = browser.get("/app/chargers").text
    until = (now + dt.timedelta(seconds=300)).strftime("%Y-%m-%d %H:%M UTC")
    assert "online" in page and f"locked until {until}" in page

    fleet_clock.advance(301)
    assert "locked until" not in browser.get("/app/chargers").text


def queries_of(client: TestClient, browser: TestClient, path: str) -> int:
    """The SQL statements the app executed to answer one GET of `path`."""
    engine = client.app.state.fleet.engine  # type: ignore[attr-defined]
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert browser.get(path).status_code == 200, path
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(statements)


def test_my_chargers_asks_the_same_queries_for_many_chargers_as_for_few(
    client: TestClient, fleet_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One query for all connections and one for all lockouts, not a few per charger; each
    charger's state is what the per-charger rules (the JSON API's) say of it alone."""
    browser, _serial, _pin = commissioned(client)
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    alone = queries_of(client, browser, "/app/chargers")
    for made in provision(client, count=6):
        answer = post_form(
            browser, "/app/commission", {"code": made.sticker.encode()}, from_page="/app/commission"
        )
        assert answer.status_code == 200, answer.text
    now = utc_now(fleet_clock)
    with fleet.sessions() as db:
        ids = list(db.scalars(select(Charger.id).order_by(Charger.serial)))
    with fleet.sessions() as db, db.begin():
        wall = gateways.wall_now()
        gateways.beat(db, "process-1", wall)
        gateways.beat(db, "process-2", wall - gateways.GRACE - dt.timedelta(seconds=1))
        registry.take(db, ids[1], "connection-1", "process-1", now)
        registry.take(db, ids[2], "connection-2", "process-1", now - dt.timedelta(hours=1))
        # Heard just now, but through a gateway whose heartbeat stopped: offline.
        registry.take(db, ids[6], "connection-6", "process-2", now)
    running = json.dumps({"failures": 5, "duration": 3600})
    over = json.dumps({"failures": 5, "duration": 60})
    reported(client, ids[3], SecurityEventType.PIN_LOCKOUT, running, now)
    reported(client, ids[4], SecurityEventType.PIN_LOCKOUT, over, now - dt.timedelta(hours=1))
    reported(client, ids[4], SecurityEventType.PIN_LOCKOUT, running, now)
    # The newest lockout reported is the one that counts: this one ended, the older one runs.
    reported(client, ids[5], SecurityEventType.PIN_LOCKOUT, running, now)
    reported(client, ids[5], SecurityEventType.PIN_LOCKOUT, over, now - dt.timedelta(hours=1))
    reported(client, ids[6], SecurityEventType.LOGIN_FAILED, running, now)

    assert queries_of(client, browser, "/app/chargers") == alone
    owner = login(client, OWNER)["Authorization"].removeprefix("Bearer ")
    with fleet.sessions() as db:
        user = user_for_digest(db, token_digest(owner), now)
        listed = overview.my_chargers(db, user, now, fleet.settings.ocpp_heartbeat_interval)
        interval = fleet.settings.ocpp_heartbeat_interval
        for state in listed:
            serial = state.info.serial
            assert state.online == registry.connection_of(db, user, serial, now, interval).online
            assert state.locked_until == events.locked_until(db, user, serial, now)
    assert [s.online for s in listed] == [False, True, False, False, False, False, False]
    locked = [s.locked_until is not None for s in listed]
    assert locked == [False, False, False, True, True, False, False]
    # An owner of more chargers than one IN list holds gets the same answer, in more batches.
    monkeypatch.setattr(registry, "IN_BATCH", 3)
    monkeypatch.setattr(events, "IN_BATCH", 3)
    with fleet.sessions() as db:
        user = user_for_digest(db, token_digest(owner), now)
        assert overview.my_chargers(db, user, now, interval) == listed


def test_security_events_are_newest_first_in_words_and_paged(
    client: TestClient, fleet_clock: FakeClock
) -> None:
    browser, serial, _pin = commissioned(client)
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    with fleet.sessions() as db:
        charger_id = db.scalar(select(Charger.id).where(Charger.serial == serial))
    for count in range(2, PAGE_SIZE + 7):
        info = json.dumps({"count": count, "epoch": 0})
        reported(client, charger_id, SecurityEventType.LOGIN_FAILED, info, utc_now(fleet_clock))
        fleet_clock.advance(60)

    first = browser.get(f"/app/chargers/{serial}/events")
    assert first.status_code == 200
    counts = [int(part.split(" wrong PINs")[0]) for part in first.text.split("<span>")[1:]]
    assert counts == list(range(PAGE_SIZE + 6, 6, -1))
    older = first.text.split("events?before=")[1].split('"')[0]
    second = browser.get(f"/app/chargers/{serial}/events?before={older}")
    rest = [int(part.split(" wrong PINs")[0]) for part in second.text.split("<span>")[1:]]
    assert rest == [6, 5, 4, 3, 2] and "before=" not in second.text
    assert browser.get(f"/app/chargers/{serial}/events?before=-1").status_code == 422


def test_signing_out_ends_the_session_on_the_server(client: TestClient) -> None:
    browser = browser_for(client)
    sign_up(browser, OWNER)
    token = browser.cookies[SESSION_COOKIE]

    out = post_form(browser, "/app/signout", {}, from_page="/app/chargers")

    assert out.status_code == 303 and out.headers["location"] == "/app/signin"
    replay = browser_for(client)
    replay.cookies.set(SESSION_COOKIE, token, path="/app")
    answer = replay.get("/app/chargers", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/app/signin"


def test_people_invite_accept_withdraw_and_revoke(client: TestClient) -> None:
    owner, serial, pin = commissioned(client)
    people = f"/app/chargers/{serial}/people"
    page = post_form(
        owner,
        f"/app/chargers/{serial}/invitations",
        {"email": "Guest@Example.com"},
        from_page=people,
    )
    assert page.status_code == 200
    code = page.text.split('id="invitation-code">')[1].split("<")[0]
    assert len(code) >= 16 and "guest@example.com" in page.text and "Withdraw" in page.text
    assert code not in owner.get(people).text  # shown once: only its hash is kept

    stranger = browser_for(client)
    sign_up(stranger, "stranger@example.com")
    assert stranger.get(people).status_code == 404
    taken = post_form(
        stranger, "/app/invitations/accept", {"code": code}, from_page="/app/chargers"
    )
    assert taken.status_code == 403 and f'value="{code}"' in taken.text
    assert stranger.get(f"/app/chargers/{serial}").status_code == 404

    guest = browser_for(client)
    sign_up(guest, "guest@example.com")
    accepted = post_form(
        guest, "/app/invitations/accept", {"code": code}, from_page="/app/chargers"
    )
    assert accepted.status_code == 303 and accepted.headers["location"] == f"/app/chargers/{serial}"
    assert "Show PIN" in guest.get(f"/app/chargers/{serial}").text
    assert guest.get(people).status_code == 403  # people are the owner's

    second = post_form(
        owner,
        f"/app/chargers/{serial}/invitations",
        {"email": "late@example.com"},
        from_page=people,
    )
    late_code = second.text.split('id="invitation-code">')[1].split("<")[0]
    invitation_id = second.text.split("/invitations/")[1].split("/withdraw")[0]
    withdrawn = post_form(
        owner, f"/app/chargers/{serial}/invitations/{invitation_id}/withdraw", {}, from_page=people
    )
    assert withdrawn.status_code == 303 and "late@example.com" not in owner.get(people).text
    late = browser_for(client)
    sign_up(late, "late@example.com")
    refused = post_form(
        late, "/app/invitations/accept", {"code": late_code}, from_page="/app/chargers"
    )
    assert refused.status_code == 404 and "withdrawn" in refused.text

    already = post_form(
        owner,
        f"/app/chargers/{serial}/invitations",
        {"email": "guest@example.com"},
        from_page=people,
    )
    assert already.status_code == 409 and 'value="guest@example.com"' in already.text

    guest_id = client.get("/me", headers=login(client, "guest@example.com")).json()["id"]
    forged = owner.post(
        f"/app/chargers/{serial}/members/{guest_id}/revoke", headers=origin_of(owner)
    )
    assert forged.status_code == 403 and "Show PIN" in guest.get(f"/app/chargers/{serial}").text
    done = post_form(
        owner, f"/app/chargers/{serial}/members/{guest_id}/revoke", {}, from_page=people
    )
    assert done.status_code == 200 and "guest@example.com no longer has access" in done.text
    after = guest.get(f"/app/chargers/{serial}")
    assert after.status_code == 403 and "revoked" in after.text and pin not in after.text


def test_signing_in_again_ends_the_session_the_browser_held(client: TestClient) -> None:
    browser = browser_for(client)
    sign_up(browser, OWNER)
    first = browser.cookies[SESSION_COOKIE]
    again = post_form(
        browser, "/app/signin", {"email": OWNER, "password": PASSWORD}, from_page="/app/signin"
    )
    assert again.status_code == 303 and browser.cookies[SESSION_COOKIE] != first
    with client.app.state.fleet.sessions() as db:  # type: ignore[attr-defined]
        stored = list(db.scalars(select(Token.token_hash)))
    assert stored == [token_digest(browser.cookies[SESSION_COOKIE])]


def queued(client: TestClient) -> list[tuple[str, dict[str, str], str]]:
    """The outbox: (action, args as the ticket will carry them, state) of every command, oldest
    first; a chosen PIN is never in the table in clear."""
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    with fleet.sessions() as db:
        rows = list(db.scalars(select(CsmsCommand).order_by(CsmsCommand.id)))
        assert not any("pin" in (c.args or {}) for c in rows)
        return [
            (c.action, outbox.command_args(fleet.vault, c.charger_id, c.args or {}), c.state)
            for c in rows
        ]


def signed_in_as(client: TestClient, email: str) -> TestClient:
    browser = browser_for(client)
    answer = post_form(
        browser, "/app/signin", {"email": email, "password": PASSWORD}, from_page="/app/signin"
    )
    assert answer.status_code == 303, answer.text
    return browser


def test_the_owner_changes_the_pin_with_the_command_the_api_queues(
    client: TestClient, fleet_clock: FakeClock
) -> None:
    owner, serial, pin = commissioned(client)
    info = f"/app/chargers/{serial}"
    page = owner.get(info)
    assert "Change PIN" in page.text and "Offline: commands wait" in page.text

    # Typed with spaces around it: kept (and sent) in the six-digit form the ticket carries.
    done = post_form(owner, f"{info}/change-pin", {"pin": " 730418 "}, from_page=info)

    assert done.status_code == 200, done.text
    assert "The new PIN was sent to the charger: it is offline" in done.text
    assert ": waiting." in done.text and "730418" not in done.text
    assert queued(client) == [("change_pin", {"pin": "730418"}, "waiting")]
    # The same command as the JSON API's, listed by the API to the owner.
    api = client.get(f"/chargers/{serial}/commands", headers=login(client, OWNER)).json()
    assert [(c["action"], c["state"]) for c in api] == [("change_pin", "waiting")]
    assert pin not in done.text and "730418" not in owner.get(info).text
    assert "change pin</td><td>waiting" in owner.get(info).text

    # Online, the page says the charger gets it now.
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    with fleet.sessions() as db, db.begin():
        charger_id = db.scalar(select(Charger.id).where(Charger.serial == serial))
        gateways.beat(db, "process-1", gateways.wall_now())  # a live gateway holds it
        registry.take(db, charger_id, "connection-1", "process-1", utc_now(fleet_clock))
    again = post_form(owner, f"{info}/change-pin", {"pin": "591724"}, from_page=info)
    assert again.status_code == 200 and "it is online, so it gets it over OCPP now" in again.text


def test_a_weak_or_malformed_pin_is_refused_with_the_core_rule_s_reason(
    client: TestClient,
) -> None:
    owner, serial, _pin = commissioned(client)
    info = f"/app/chargers/{serial}"
    for typed, status, why in (
        ("123456", 422, f"too easy to guess: {weakness('123456')}; choose another PIN"),
        ("111111", 422, f"too easy to guess: {weakness('111111')}"),
        ("121212", 422, f"too easy to guess: {weakness('121212')}"),
        ("12ab56", 422, "PIN must be exactly 6 digits 0-9"),
        ("1" * 65, 422, "New PIN: String should have at most 64 characters"),
    ):
        answer = post_form(owner, f"{info}/change-pin", {"pin": typed}, from_page=info)
        assert answer.status_code == status, typed
        assert why in answer.text, (typed, answer.text)
        assert f'value="{typed}"' not in answer.text  # a refused PIN is not typed back
        assert 'id="new-pin"' in answer.text  # the form again, to try another
    assert queued(client) == []


def test_change_pin_on_firmware_below_6_11_says_why_in_the_pin_class_s_words(
    client: TestClient,
) -> None:
    """An optional-PIN charger (6.7.17 to 6.11): the page says why in the PIN class's words;
    a forged POST is refused by the same rule as the JSON API's, nothing queued. (A charger
    below 6.7.17 is never provisioned: fleet/factory.py refuses it.)"""
    owner, serial, _pin = commissioned(client, OPTIONAL)
    info = f"/app/chargers/{serial}"
    page = owner.get(info).text
    assert "cannot be changed" in page and 'id="new-pin"' not in page
    assert "update to 6.11 or higher to change it" in page
    forced = post_form(owner, f"{info}/change-pin", {"pin": "730418"}, from_page=info)
    assert forced.status_code == 409 and "needs firmware 6.11 or higher" in forced.text
    assert queued(client) == []
    # The JSON API refuses it the same way, before anything is queued.
    api = client.post(
        f"/chargers/{serial}/commands",
        json={"action": "change_pin", "args": {"pin": "730418"}},
        headers=login(client, OWNER),
    )
    assert api.status_code == 409 and api.json()["error"] == "action_not_allowed"
    assert api.json()["detail"] in forced.text
    assert queued(client) == []


def test_only_the_owner_changes_the_pin_and_only_with_the_page_s_token(
    client: TestClient,
) -> None:
    owner, serial, _pin = commissioned(client)
    owner_api = login(client, OWNER)
    info = f"/app/chargers/{serial}"
    change = f"{info}/change-pin"

    forged = owner.post(change, data={"pin": "730418"}, headers=origin_of(owner))
    assert forged.status_code == 403 and "reload the page" in forged.text
    foreign = owner.post(
        change,
        data={"pin": "730418", "csrf": csrf_of(owner.get(info))},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403

    stranger = browser_for(client)
    sign_up(stranger, "stranger@example.com")
    tried = post_form(stranger, change, {"pin": "730418"}, from_page="/app/chargers")
    assert tried.status_code == 404

    invited(client, owner_api, serial, "member@example.com")
    member = signed_in_as(client, "member@example.com")
    assert "Change PIN" not in member.get(info).text
    tried = post_form(member, change, {"pin": "730418"}, from_page=info)
    assert tried.status_code == 403 and "owner" in tried.text

    member_id = client.get("/me", headers=login(client, "member@example.com")).json()["id"]
    assert client.delete(f"/chargers/{serial}/members/{member_id}", headers=owner_api).is_success
    before = len(queued(client))
    tried = post_form(member, change, {"pin": "730418"}, from_page="/app/chargers")
    assert tried.status_code == 403 and "revoked" in tried.text
    assert len(queued(client)) == before
    assert all(action != "change_pin" for action, _args, _state in queued(client))


def bonded(
    client: TestClient, headers: dict[str, str], made: Any, address: str, sequence: int
) -> None:
    """A phone's bond, as the charger states it after pairing, relayed by its member."""
    ltk = secrets.token_bytes(16)
    bond = bond_statement.bond_id(made.secret, made.serial, ltk)
    statement = bond_statement.make(made.secret, made.serial, BondedPhone(address, sequence, bond))
    relayed = client.post(
        f"/chargers/{made.serial}/phones", json={"statement": statement.hex()}, headers=headers
    )
    assert relayed.status_code == 200, relayed.text


MEMBER_PHONE = "F0:F1:F2:F3:F4:F5"
OWNER_PHONE = "C4:11:22:33:44:55"


def test_people_asks_the_same_queries_for_many_members_with_phones_as_for_one(
    client: TestClient,
) -> None:
    owner, made = commissioned_charger(client)
    owner_api = login(client, OWNER)
    people = f"/app/chargers/{made.serial}/people"
    bonded(client, owner_api, made, OWNER_PHONE, 1)
    alone = queries_of(client, owner, people)
    for n in range(3):
        member_api = invited(client, owner_api, made.serial, f"member{n}@example.com")
        bonded(client, member_api, made, f"F0:F1:F2:F3:F4:{n:02X}", 2 + 2 * n)
        bonded(client, member_api, made, f"F0:F1:F2:F3:F5:{n:02X}", 3 + 2 * n)

    assert queries_of(client, owner, people) == alone
    page = owner.get(people).text
    for n in range(3):  # each member's phones, in bond order, under their own name
        first, second = f"F0:F1:F2:F3:F4:{n:02X}", f"F0:F1:F2:F3:F5:{n:02X}"
        assert page.index(first) < page.index(second)
        assert f"Remove the phone {first} of member{n}@example.com" in page
    assert f"Remove the phone {OWNER_PHONE} of {OWNER}" in page


def test_paired_phones_are_removed_with_the_command_the_api_queues(client: TestClient) -> None:
    owner, made = commissioned_charger(client)
    serial = made.serial
    owner_api = login(client, OWNER)
    member_api = invited(client, owner_api, serial, "member@example.com")
    bonded(client, owner_api, made, OWNER_PHONE, 1)
    bonded(client, member_api, made, MEMBER_PHONE, 2)
    people = f"/app/chargers/{serial}/people"
    page = owner.get(people).text
    assert "Paired phones" in page and OWNER_PHONE in page and MEMBER_PHONE in page
    assert f"Remove the phone {MEMBER_PHONE} of member@example.com" in page

    forged = owner.post(
        f"/app/chargers/{serial}/phones/remove",
        data={"address": MEMBER_PHONE},
        headers=origin_of(owner),
    )
    assert forged.status_code == 403 and queued(client) == []

    done = post_form(
        owner, f"/app/chargers/{serial}/phones/remove", {"address": MEMBER_PHONE}, from_page=people
    )

    assert done.status_code == 200, done.text
    assert f"Removal of {MEMBER_PHONE} sent to the charger over OCPP" in done.text
    assert queued(client) == [("remove_phone", {"address": MEMBER_PHONE}, "waiting")]
    api = client.get(f"/chargers/{serial}/commands", headers=owner_api).json()
    assert [(c["action"], c["args"], c["state"]) for c in api] == [
        ("remove_phone", {"address": MEMBER_PHONE}, "waiting")
    ]
    listed = owner.get(people).text.split(MEMBER_PHONE)[1]
    assert "removal waiting" in listed.split("</li>")[0]
    assert "removal" not in owner.get(people).text.split(OWNER_PHONE)[1].split("</li>")[0]

    junk = post_form(
        owner, f"/app/chargers/{serial}/phones/remove", {"address": "<b>x"}, from_page=people
    )
    assert junk.status_code == 422 and "argument address must look like" in junk.text
    assert "<b>x" not in junk.text and len(queued(client)) == 1


def test_only_the_owner_removes_a_phone(client: TestClient) -> None:
    owner, made = commissioned_charger(client)
    serial = made.serial
    owner_api = login(client, OWNER)
    member_api = invited(client, owner_api, serial, "member@example.com")
    bonded(client, member_api, made, MEMBER_PHONE, 1)
    remove = f"/app/chargers/{serial}/phones/remove"

    stranger = browser_for(client)
    sign_up(stranger, "stranger@example.com")
    tried = post_form(stranger, remove, {"address": MEMBER_PHONE}, from_page="/app/chargers")
    assert tried.status_code == 404 and MEMBER_PHONE not in tried.text
    assert stranger.get(f"/app/chargers/{serial}/people").status_code == 404

    member = signed_in_as(client, "member@example.com")
    tried = post_form(member, remove, {"address": MEMBER_PHONE}, from_page="/app/chargers")
    assert tried.status_code == 403 and "owner" in tried.text
    assert queued(client) == []

    member_id = client.get("/me", headers=member_api).json()["id"]
    revoked = client.delete(f"/chargers/{serial}/members/{member_id}", headers=owner_api)
    assert revoked.status_code == 200
    # Revoking queued the removal of the member's phone; the page shows it as theirs, revoked.
    assert queued(client) == [("remove_phone", {"address": MEMBER_PHONE}, "waiting")]
    page = owner.get(f"/app/chargers/{serial}/people").text
    assert "member@example.com (revoked); removal waiting" in page
    tried = post_form(member, remove, {"address": MEMBER_PHONE}, from_page="/app/chargers")
    assert tried.status_code == 403 and "revoked" in tried.text
    assert len(queued(client)) == 1


# --- the passcode pop-up (optional-PIN chargers) -----------------------------------------------

POP_UP = 'id="pin-setup"'
INTERRUPTED = "The connection will be interrupted; reconnect with the PIN."


def test_the_owner_of_an_optional_charger_sets_up_the_passcode_from_the_pop_up(
    client: TestClient, fleet_clock: FakeClock
) -> None:
    owner, serial, _pin = commissioned(client, OPTIONAL)
    info = f"/app/chargers/{serial}"
    page = owner.get(info).text
    assert POP_UP in page and "<dialog open" in page and "Set up a passcode?" in page
    assert page.index(POP_UP) < page.index("<dl>")  # first on the page: first in focus order

    done = post_form(owner, f"{info}/pin-setup", {}, from_page=info)

    assert done.status_code == 200, done.text
    assert INTERRUPTED in done.text and POP_UP not in done.text
    assert "the charger is offline, so it gets it over OCPP when it connects" in done.text
    assert queued(client) == [("enable_pin", {}, "waiting")]
    (command,) = client.get(f"/chargers/{serial}/commands", headers=login(client, OWNER)).json()
    assert (command["action"], command["state"]) == ("enable_pin", "waiting")
    assert f"Command {command['id']}: waiting." in done.text
    # While it is on its way: its state, and no second offer.
    again = owner.get(info).text
    assert INTERRUPTED in again and POP_UP not in again and "Set up a passcode" not in again

    # The charger applied it: the PIN is on, Show PIN, nothing more offered.
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    with fleet.sessions() as db, db.begin():
        row = db.scalar(select(Charger).where(Charger.serial == serial))
        assert row is not None
        row.pin_enabled = True
        stored = db.scalar(select(CsmsCommand).where(CsmsCommand.action == "enable_pin"))
        assert stored is not None
        stored.state = outbox.CommandState.APPLIED.value
    after = owner.get(info).text
    assert POP_UP not in after and INTERRUPTED not in after and "Show PIN" in after


def test_not_now_closes_the_pop_up_for_this_session_only(client: TestClient) -> None:
    owner, serial, _pin = commissioned(client, OPTIONAL)
    info = f"/app/chargers/{serial}"

    closed = post_form(owner, f"{info}/pin-setup/not-now", {}, from_page=info)

    assert closed.status_code == 303 and closed.headers["location"] == info
    cookie = next(c for c in closed.headers.get_list("set-cookie") if "chargepin_notnow" in c)
    flags = {part.strip().lower().split("=")[0] for part in cookie.split(";")}
    assert {"httponly", "samesite", "path"} <= flags and "max-age" not in flags
    page = owner.get(info).text
    assert POP_UP not in page and "Set up a passcode" in page  # still possible, not pressed
    assert queued(client) == []
    # Another sign-in of the same account is another session: offered again; and this
    # session's cookie copied into another session's browser counts for nothing.
    other = signed_in_as(client, OWNER)
    assert POP_UP in other.get(info).text
    other.cookies.set("chargepin_notnow", owner.cookies["chargepin_notnow"], path="/app")
    assert POP_UP in other.get(info).text
    other.cookies.set("chargepin_notnow", "junk." + serial, path="/app")
    assert POP_UP in other.get(info).text
    # The button left on Charger Info sets it up as the pop-up's does.
    done = post_form(owner, f"{info}/pin-setup", {}, from_page=info)
    assert done.status_code == 200 and INTERRUPTED in done.text
    assert queued(client) == [("enable_pin", {}, "waiting")]


def test_only_the_owner_sets_up_the_passcode_and_only_with_the_page_s_token(
    client: TestClient,
) -> None:
    owner, serial, _pin = commissioned(client, OPTIONAL)
    owner_api = login(client, OWNER)
    info = f"/app/chargers/{serial}"
    setup = f"{info}/pin-setup"

    forged = owner.post(setup, data={}, headers=origin_of(owner))
    assert forged.status_code == 403 and "reload the page" in forged.text
    foreign = owner.post(
        setup, data={"csrf": csrf_of(owner.get(info))}, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    json_body = owner.post(setup, json={"csrf": csrf_of(owner.get(info))}, headers=origin_of(owner))
    assert json_body.status_code == 403

    stranger = browser_for(client)
    sign_up(stranger, "stranger@example.com")
    assert post_form(stranger, setup, {}, from_page="/app/chargers").status_code == 404
    assert post_form(stranger, f"{setup}/not-now", {}, from_page="/app/chargers").status_code == 404

    invited(client, owner_api, serial, "member@example.com")
    member = signed_in_as(client, "member@example.com")
    page = member.get(info).text
    assert POP_UP not in page and "Set up a passcode" not in page
    tried = post_form(member, setup, {}, from_page=info)
    assert tried.status_code == 403 and "owner" in tried.text

    member_id = client.get("/me", headers=login(client, "member@example.com")).json()["id"]
    assert client.delete(f"/chargers/{serial}/members/{member_id}", headers=owner_api).is_success
    tried = post_form(member, setup, {}, from_page="/app/chargers")
    assert tried.status_code == 403 and "revoked" in tried.text
    assert all(action != "enable_pin" for action, _args, _state in queued(client))


def test_a_mandatory_or_too_old_charger_gets_no_pop_up_and_a_forged_set_up_the_api_s_refusal(
    client: TestClient,
) -> None:
    owner, serial, _pin = commissioned(client, MANDATORY)
    owner_api = login(client, OWNER)
    info = f"/app/chargers/{serial}"
    assert POP_UP not in owner.get(info).text

    forced = post_form(owner, f"{info}/pin-setup", {}, from_page=info)

    assert forced.status_code == 409 and "the PIN is already on" in forced.text
    api = client.post(
        f"/chargers/{serial}/commands", json={"action": "enable_pin"}, headers=owner_api
    )
    assert api.status_code == 409 and api.json()["error"] == "action_not_allowed"
    assert api.json()["detail"] in forced.text
    assert queued(client) == []

    # A charger whose firmware has no PIN (it reported 6.7.16; the factory makes none that old).
    (made,) = provision(client, OPTIONAL)
    claimed = post_form(
        owner, "/app/commission", {"code": made.sticker.encode()}, from_page="/app/commission"
    )
    assert claimed.status_code == 200, claimed.text
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    with fleet.sessions() as db, db.begin():
        row = db.scalar(select(Charger).where(Charger.serial == made.serial))
        assert row is not None
        row.firmware = FirmwareVersion.parse("6.7.16")
    old = f"/app/chargers/{made.serial}"
    assert POP_UP not in owner.get(old).text and "Set up a passcode" not in owner.get(old).text
    forced = post_form(owner, f"{old}/pin-setup", {}, from_page=old)
    assert forced.status_code == 409 and "does not support a PIN" in forced.text
    api = client.post(
        f"/chargers/{made.serial}/commands", json={"action": "enable_pin"}, headers=owner_api
    )
    assert api.status_code == 409 and api.json()["detail"] in forced.text
    assert queued(client) == []
