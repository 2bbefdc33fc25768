"""The radio app's own routes over HTTP, without a radio: the fleet's pages forwarded (its CSRF
Origin check still holds), and the Bluetooth screens refusing forged forms, strangers, revoked
users and hostile input before anything goes on the air (docs/APP.md, "Radio mode").

The app's phone is never started here (no lifespan): a request that reached the radio would
fail the test with the app's error, so each refusal also shows nothing was sent over the air.
The fleet is the real app on a SQLite file, reached in-process; the app holds no database, so
PostgreSQL adds nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from chargepin.app.forward import Forwarder
from chargepin.app.radio import Radio, RadioOptions
from chargepin.app.server import create_app
from chargepin.clock import FakeClock
from chargepin.fleet.web.headers import CONTENT_SECURITY_POLICY
from chargepin.fleet.web.sessions import SESSION_COOKIE
from chargepin.fleet.web.uploads import PHOTO_BODY_BYTES
from chargepin.lab.local_fleet import LocalFleet
from chargepin.phone.flows import PhoneOptions
from tests.fleet.test_web_scan import photographed, scan, sticker_png
from tests.helpers.cli import invoke
from tests.helpers.fleet_settings import start_fleet
from tests.helpers.web_app import csrf_of, origin_of, post_form, sign_up

NOWHERE = "tcp-client:127.0.0.1:9"
"""The phone's transport: never opened in these tests."""
FLEET = "http://fleet.local"
APP = "http://127.0.0.1:8080"
NEARBY_LINK = 'href="/app/nearby"'


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    fleet = start_fleet(f"sqlite:///{tmp_path / 'fleet.db'}", FakeClock())
    yield fleet
    fleet.dispose()


def radio_app(tmp_path: Path, fleet: LocalFleet, fleet_url: str = FLEET) -> TestClient:
    options = RadioOptions(PhoneOptions(transport=NOWHERE, bonds=tmp_path / "bonds.db"))
    transport = httpx.ASGITransport(app=fleet.app)
    app = create_app(fleet_url, Radio(options), fleet_transport=transport)
    return TestClient(app, base_url=APP)


def owner_with_charger(tmp_path: Path, fleet: LocalFleet) -> tuple[TestClient, str]:
    """A browser of the radio app, signed up and commissioned through the forwarded pages."""
    (made,) = fleet.provision("Pulsar Max", "6.11.2")
    browser = radio_app(tmp_path, fleet)
    sign_up(browser, "owner@example.com")
    answer = post_form(
        browser, "/app/commission", {"code": made.sticker.encode()}, from_page="/app/commission"
    )
    assert answer.status_code == 200, answer.text
    return browser, made.serial


def another_browser(browser: TestClient) -> TestClient:
    return TestClient(browser.app, base_url=APP)


def test_the_fleets_pages_come_through_with_the_nearby_link_and_their_csrf_check(
    tmp_path: Path, fleet: LocalFleet
) -> None:
    browser, serial = owner_with_charger(tmp_path, fleet)

    listed = browser.get("/app/chargers")
    assert listed.status_code == 200
    assert serial in listed.text and NEARBY_LINK in listed.text
    assert listed.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert listed.headers["cache-control"] == "no-store"
    session = browser.cookies.get(SESSION_COOKIE)
    assert session
    # The fleet's own pages, asked directly, have no Nearby: there is no radio there.
    with TestClient(fleet.app, base_url=FLEET) as direct:
        direct.cookies.set(SESSION_COOKIE, session)
        mine = direct.get("/app/chargers")
    assert serial in mine.text and NEARBY_LINK not in mine.text

    # The browser's Origin and Host reach the fleet as they were: a foreign page is refused.
    token = csrf_of(browser.get(f"/app/chargers/{serial}"))
    forged = browser.post(
        f"/app/chargers/{serial}/pin",
        data={"csrf": token},
        headers={"Origin": "http://evil.example"},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    shown = browser.post(
        f"/app/chargers/{serial}/pin",
        data={"csrf": token},
        headers=origin_of(browser),
        follow_redirects=False,
    )
    assert shown.status_code == 200 and 'id="pin"' in shown.text
    assert browser.get("/app/static/countdown.js").status_code == 200


def test_one_browsers_cookies_are_never_sent_for_another(tmp_path: Path, fleet: LocalFleet) -> None:
    """The forwarder keeps no cookie jar: the fleet's Set-Cookie goes to the browser that
    asked, and a request carries only its own browser's cookies."""
    browser, serial = owner_with_charger(tmp_path, fleet)
    assert serial in browser.get("/app/chargers").text
    newcomer = another_browser(browser)
    answer = newcomer.get("/app/chargers", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/app/signin"
    page = newcomer.get("/app/signin")
    assert page.status_code == 200
    assert "chargepin_presession" in page.headers.get("set-cookie", "")  # a fresh one, its own


def test_only_the_fleets_pages_are_forwarded_and_only_to_the_fleet(
    tmp_path: Path, fleet: LocalFleet
) -> None:
    browser = radio_app(tmp_path, fleet)
    for path in ("/register", "/login", "/chargers", "/docs", "/openapi.json"):
        assert browser.get(path).status_code == 404, path  # the JSON API is not forwarded

    forwarder = Forwarder(FLEET)
    for raw in (b"/app/@evil.example/x", b"/app//evil.example", b"/app/..%2f..%2fregister"):
        scope = {"type": "http", "method": "GET", "path": raw.decode(), "raw_path": raw}
        scope |= {"query_string": b"next=http://evil.example", "headers": []}
        target = forwarder.target(_request(scope))
        assert (target.scheme, target.host, target.port) == ("http", "fleet.local", None)
        assert target.raw_path.startswith(raw)


def _request(scope: dict[str, object]) -> object:
    from starlette.requests import Request

    return Request(scope)  # type: ignore[arg-type]


def test_a_fleet_that_does_not_answer_is_a_page_not_a_crash(
    tmp_path: Path, fleet: LocalFleet
) -> None:
    options = RadioOptions(PhoneOptions(transport=NOWHERE, bonds=tmp_path / "bonds.db"))
    browser = TestClient(create_app("http://127.0.0.1:9", Radio(options)), base_url=APP)
    answer = browser.get("/app/signin")
    assert answer.status_code == 502
    assert "did not answer" in answer.text
    browser.cookies.set(SESSION_COOKIE, "whatever", path="/app")
    screen = browser.get("/app/nearby/CP00000001")
    assert screen.status_code == 502
    assert "did not answer" in screen.text


def test_the_bluetooth_screens_refuse_forged_forms(tmp_path: Path, fleet: LocalFleet) -> None:
    browser, serial = owner_with_charger(tmp_path, fleet)
    screen = browser.get(f"/app/nearby/{serial}")  # not connected: the screen to connect
    assert screen.status_code == 200
    assert "is not connected" in screen.text
    token = csrf_of(screen)
    fleet_token = csrf_of(browser.get(f"/app/chargers/{serial}"))
    assert fleet_token != token  # the app's forms have a key of their own

    other = another_browser(browser)
    sign_up(other, "other@example.com")
    others_token = csrf_of(other.get("/app/nearby/CP-NONE"))

    own = origin_of(browser)
    for action in ("connect", "pair", "retry", "limit", "enable-pin", "not-now", "disconnect"):
        answer = browser.post(f"/app/nearby/{serial}/{action}", data={}, headers=own)
        assert answer.status_code == 403, action
    connect = f"/app/nearby/{serial}/connect"
    for data, headers in (
        ({}, own),
        ({"csrf": "0" * 64}, own),
        ({"csrf": token[:-1]}, own),
        ({"csrf": fleet_token}, own),
        ({"csrf": others_token}, own),
        ({"csrf": token}, {"Origin": "http://evil.example"}),
        ({"csrf": token}, {"Sec-Fetch-Site": "cross-site"}),
    ):
        answer = browser.post(connect, data=data, headers=headers, follow_redirects=False)
        assert answer.status_code == 403, (data, headers)
        assert "reload the page" in answer.text
    as_json = browser.post(connect, json={"csrf": token}, headers=own, follow_redirects=False)
    assert as_json.status_code == 403
    too_many = "&".join(f"f{i}=1" for i in range(20)) + f"&csrf={token}"
    crammed = browser.post(
        connect,
        content=too_many,
        headers={**own, "Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert crammed.status_code == 403


def test_strangers_revoked_users_and_no_session_get_nothing(
    tmp_path: Path, fleet: LocalFleet
) -> None:
    browser, serial = owner_with_charger(tmp_path, fleet)
    stranger = another_browser(browser)
    sign_up(stranger, "stranger@example.com")
    for path in (f"/app/nearby/{serial}", "/app/nearby/CP99999999"):
        answer = stranger.get(path)
        assert answer.status_code == 404
        assert "no such charger on your account" in answer.text
    token = csrf_of(stranger.get("/app/nearby/CP99999999"))
    actions = ("connect", "pair", "retry", "start", "stop", "limit", "disconnect", "not-now")
    for action in (*actions, "enable-pin"):
        answer = stranger.post(
            f"/app/nearby/{serial}/{action}",
            data={"csrf": token, "pin": "918273", "amps": "16"},
            headers=origin_of(stranger),
            follow_redirects=False,
        )
        assert answer.status_code == 404, action

    # An invited user may use the charger until the owner revokes them.
    invited = post_form(
        browser,
        f"/app/chargers/{serial}/invitations",
        {"email": "guest@example.com"},
        from_page=f"/app/chargers/{serial}/people",
    )
    code = re.search(r'id="invitation-code"[^>]*>([^<]+)<', invited.text)
    assert code is not None, invited.text
    guest = another_browser(browser)
    sign_up(guest, "guest@example.com")
    accepted = post_form(
        guest,
        "/app/invitations/accept",
        {"code": code.group(1)},
        from_page="/app/invitations/accept",
    )
    assert accepted.status_code == 303
    assert "is not connected" in guest.get(f"/app/nearby/{serial}").text
    people = browser.get(f"/app/chargers/{serial}/people").text
    member = re.search(r"/members/([0-9]+)/revoke", people)
    assert member is not None
    revoked = post_form(
        browser,
        f"/app/chargers/{serial}/members/{member.group(1)}/revoke",
        {},
        from_page=f"/app/chargers/{serial}/people",
    )
    assert revoked.status_code == 200
    gone = guest.get(f"/app/nearby/{serial}")
    assert gone.status_code == 404 and "no such charger on your account" in gone.text
    token = csrf_of(guest.get("/app/nearby/CP99999999"))
    refused = guest.post(
        f"/app/nearby/{serial}/connect", data={"csrf": token}, headers=origin_of(guest)
    )
    assert refused.status_code == 404

    nobody = another_browser(browser)
    for path in ("/app/nearby", f"/app/nearby/{serial}"):
        answer = nobody.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/app/signin"
    ended = another_browser(browser)
    ended.cookies.set(SESSION_COOKIE, "not-a-session-token", path="/app")
    answer = ended.get("/app/nearby", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/app/signin"


def test_hostile_input_is_said_on_the_page_before_anything_goes_on_the_air(
    tmp_path: Path, fleet: LocalFleet
) -> None:
    browser, serial = owner_with_charger(tmp_path, fleet)
    token = csrf_of(browser.get(f"/app/nearby/{serial}"))
    own = origin_of(browser)

    for junk in ("<script>alert(1)</script>", "CP-1%0d%0aSet-Cookie:x=1", "A" * 40):
        answer = browser.get(f"/app/nearby/{junk}")
        assert answer.status_code == 404
        assert "<script>alert" not in answer.text
        posted = browser.post(f"/app/nearby/{junk}/connect", data={"csrf": token}, headers=own)
        assert posted.status_code == 404

    for typed in ("99999", "5", "33", "-16", "abc", "", "１６", "9" * 5000, "<b>16</b>"):
        answer = browser.post(
            f"/app/nearby/{serial}/limit", data={"csrf": token, "amps": typed}, headers=own
        )
        assert answer.status_code == 422, typed
        assert "Current limit:" in answer.text
        assert re.search(r"6-32 A", answer.text)
        assert "<b>16" not in answer.text  # escaped
    unknown = browser.post(f"/app/nearby/{serial}/explode", data={"csrf": token}, headers=own)
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--fleet", "ftp://fleet.example"], "http(s)://HOST"),
        (["--fleet", "http://127.0.0.1:8000/api?x=1"], "without a path or query"),
        (["--fleet", "not a url"], "--fleet"),
        (["--fleet", "http://127.0.0.1:8000", "--transport", "tcp-client:192.0.2.7:9"], "loopback"),
    ],
)
def test_chargepin_app_refuses_a_bad_fleet_url_or_transport_in_one_line(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    options = {"--transport": NOWHERE, "--bonds": str(tmp_path / "bonds.db")}
    for name, value in zip(args[::2], args[1::2], strict=True):
        options[name] = value
    code, out, err = invoke("app", *[part for pair in options.items() for part in pair])
    assert code == 2, err
    assert out == ""
    assert err.startswith("error: ") and fragment in err and len(err.splitlines()) == 1
    assert not (tmp_path / "bonds.db").exists()


def test_chargepin_app_says_in_one_line_that_its_transport_does_not_open(tmp_path: Path) -> None:
    code, out, err = invoke(
        "app",
        "--transport",
        NOWHERE,
        "--fleet",
        "http://127.0.0.1:9",
        "--bonds",
        str(tmp_path / "bonds.db"),
    )
    assert code == 2 and out == ""
    assert err.startswith("error: could not open transport") and len(err.splitlines()) == 1


def test_a_body_over_the_fleets_limit_is_refused_before_it_is_read(
    tmp_path: Path, fleet: LocalFleet
) -> None:
    browser = radio_app(tmp_path, fleet)
    for path in ("/app/signin", "/app/nearby/CP00000001/pair"):
        answer = browser.post(path, content=b"x" * (64 * 1024 + 1), headers=origin_of(browser))
        assert answer.status_code == 413, path


def test_a_host_other_than_loopback_is_refused(tmp_path: Path, fleet: LocalFleet) -> None:
    """DNS rebinding: a page of evil.example resolved to 127.0.0.1 reaches the app with its own
    Host and a matching Origin; the app answers only loopback names."""
    browser = radio_app(tmp_path, fleet)
    for path in ("/app/signin", "/app/nearby", "/app/static/app.css"):
        answer = browser.get(path, headers={"Host": "evil.example:8080"})
        assert answer.status_code == 400, path
    assert browser.get("/app/signin", headers={"Host": "localhost:8080"}).status_code == 200


def test_a_photo_of_the_sticker_commissions_through_the_app(
    tmp_path: Path, fleet: LocalFleet
) -> None:
    """The photo's route may send more than 64 KiB, through the app as to the fleet: the body
    is streamed on, bounded by the fleet's own limits."""
    (made,) = fleet.provision("Pulsar Max", "6.11.2")
    browser = radio_app(tmp_path, fleet)
    sign_up(browser, "owner@example.com")
    photo = photographed(sticker_png(made, tmp_path))
    padded = photo + b"\0" * max(0, 70 * 1024 - len(photo))  # JPEG ignores what follows its end
    assert len(padded) > 64 * 1024
    done = scan(browser, padded)
    assert done.status_code == 200, done.text
    assert "This charger is yours" in done.text
    over = browser.post(
        "/app/commission/photo",
        content=b"x" * (PHOTO_BODY_BYTES + 1),
        headers={**origin_of(browser), "Content-Type": "multipart/form-data; boundary=x"},
    )
    assert over.status_code == 413
