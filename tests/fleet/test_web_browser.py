"""The web app in a real browser: Debian's Chromium, headless, driven by Playwright, against the
fleet app behind a real uvicorn on 127.0.0.1 (docs/APP.md, "Browser tests").

The browser comes from `.ci/chromium.sh` (the Makefile passes its path in
CHARGEPIN_TEST_CHROMIUM; run alone, the fixture calls the script, which installs Debian's
package when it is missing). Playwright's own browser download is never used.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, ConsoleMessage, Page, expect
from starlette.types import Message, Receive, Scope, Send

from chargepin.clock import FakeClock
from chargepin.core.epochs import epoch_pin
from chargepin.fleet import factory
from chargepin.fleet.sticker_photo import SENT_SIDE
from chargepin.fleet.web.pages import WEB_APP_VERSION
from chargepin.fleet.web.sessions import SESSION_COOKIE
from chargepin.lab.app_screens import DESKTOP, PHONE
from chargepin.lab.bench_app import sticker_photo
from chargepin.lab.live_server import serve
from chargepin.lab.local_fleet import LocalFleet
from tests.helpers.fleet_accounts import PASSWORD
from tests.helpers.fleet_factory import MANDATORY, OPTIONAL
from tests.helpers.fleet_settings import start_fleet

FAILED_LOAD = "Failed to load resource: the server responded with a status of"
NEW_PIN = "730418"
WAIT_MS = 10_000
"""How long an expectation waits for its condition (it returns as soon as it holds)."""


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    fleet = start_fleet(f"sqlite:///{tmp_path / 'fleet.db'}", FakeClock())
    yield fleet
    fleet.dispose()


class Watched:
    """A page, with every URL it requested and every console error (a CSP refusal is one)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.urls: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda request: self.urls.append(request.url))
        page.on("console", self._console)
        page.set_default_timeout(WAIT_MS)
        expect.set_options(timeout=WAIT_MS)

    def _console(self, message: ConsoleMessage) -> None:
        # A page answered 401, 403 or 404 on purpose is logged as a failed load: not an error.
        if message.type == "error" and not message.text.startswith(FAILED_LOAD):
            self.errors.append(message.text)

    def fits(self) -> None:
        """Nothing wider than the viewport: no sideways scrolling at a phone's width."""
        overflow = self.page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{self.page.url} is {overflow} px wider than the screen"


def test_sign_up_commission_by_sticker_and_show_pin_at_a_phones_width(
    browser: Browser, fleet: LocalFleet
) -> None:
    (made,) = fleet.provision(MANDATORY.model, MANDATORY.firmware, MANDATORY.produced)
    pin = epoch_pin(made.secret, made.serial, 0).digits
    with serve(fleet.app) as base:
        context = browser.new_context(viewport=PHONE)
        watched = Watched(context.new_page())
        page = watched.page

        page.goto(f"{base}/app/")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.get_by_role("link", name="Sign up").click()
        page.get_by_label("E-mail").fill("installer@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign up").click()
        expect(page.get_by_role("heading", name="My chargers")).to_be_visible()
        expect(page.get_by_text("No charger yet")).to_be_visible()
        watched.fits()

        page.get_by_role("link", name="Add a charger").click()
        page.get_by_label("The code on the charger's sticker").fill(made.sticker.encode())
        page.get_by_role("button", name="Add the charger").click()
        expect(page.get_by_role("heading", name="This charger is yours")).to_be_visible()
        expect(page.locator("#pin")).to_have_text(pin)
        watched.fits()

        page.get_by_role("link", name="Charger Info").click()
        expect(page.get_by_role("heading", name=f"Charger {made.serial}")).to_be_visible()
        expect(page.get_by_text("mandatory: ")).to_be_visible()
        assert pin not in page.content()
        expect(page.locator(".audit tbody tr")).to_have_count(1)  # the reveal at commissioning
        watched.fits()

        page.get_by_role("button", name="Show PIN").click()
        expect(page.locator("#pin")).to_have_text(pin)
        expect(page.locator(".audit tbody tr")).to_have_count(2)
        expect(page.locator(".audit tbody tr").first).to_contain_text("installer@example.com")
        expect(page.locator(".audit tbody tr").first).to_contain_text(WEB_APP_VERSION)
        watched.fits()

        # Change PIN: a weak one explained and not typed back, then one sent to the charger.
        page.get_by_label("New 6-digit PIN").fill("123456")
        page.get_by_role("button", name="Change PIN").click()
        expect(page.get_by_role("alert")).to_contain_text("the digits count straight up")
        expect(page.get_by_label("New 6-digit PIN")).to_have_value("")
        watched.fits()
        page.get_by_label("New 6-digit PIN").fill(NEW_PIN)
        page.get_by_role("button", name="Change PIN").click()
        expect(page.locator("#sent")).to_contain_text("it is offline")
        expect(page.locator("#sent")).to_contain_text("waiting")
        assert NEW_PIN not in page.content()
        watched.fits()

        page.get_by_role("link", name="My chargers").click()
        row = page.locator(".charger")
        expect(row).to_contain_text(made.serial)
        expect(row).to_contain_text("offline")
        watched.fits()

        (cookie,) = [c for c in context.cookies() if c["name"] == SESSION_COOKIE]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
        assert page.evaluate("document.cookie") == ""  # no script can read the session
        for url in watched.urls:
            assert pin not in url and NEW_PIN not in url and cookie["value"] not in url, url
        assert watched.errors == []  # no stylesheet or script refused by the CSP
        context.close()


def test_a_wrong_password_keeps_the_address_on_a_desktop(
    browser: Browser, fleet: LocalFleet
) -> None:
    with serve(fleet.app) as base:
        context = browser.new_context(viewport=DESKTOP)
        watched = Watched(context.new_page())
        page = watched.page
        page.goto(f"{base}/app/signup")
        page.get_by_label("E-mail").fill("owner@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign up").click()
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

        page.get_by_label("E-mail").fill("owner@example.com")
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Sign in").click()

        expect(page.get_by_role("alert")).to_contain_text("wrong e-mail or password")
        expect(page.get_by_label("E-mail")).to_have_value("owner@example.com")
        expect(page.get_by_label("Password")).to_have_value("")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="My chargers")).to_be_visible()
        watched.fits()
        assert watched.errors == []
        context.close()


def sign_up_in(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/app/signup")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="My chargers")).to_be_visible()


def test_an_invited_user_accepts_in_a_second_browser_and_the_owner_revokes(
    browser: Browser, fleet: LocalFleet
) -> None:
    (made,) = fleet.provision(MANDATORY.model, MANDATORY.firmware, MANDATORY.produced)
    pin = epoch_pin(made.secret, made.serial, 0).digits
    with serve(fleet.app) as base:
        owner_context = browser.new_context(viewport=DESKTOP)
        owner = Watched(owner_context.new_page())
        sign_up_in(owner.page, base, "owner@example.com")
        owner.page.get_by_role("link", name="Add a charger").click()
        owner.page.get_by_label("The code on the charger's sticker").fill(made.sticker.encode())
        owner.page.get_by_role("button", name="Add the charger").click()
        owner.page.get_by_role("link", name="Charger Info").click()
        owner.page.get_by_role("link", name="People").click()
        owner.page.get_by_label("Invite by e-mail").fill("guest@example.com")
        owner.page.get_by_role("button", name="Invite").click()
        code = owner.page.locator("#invitation-code").inner_text()
        expect(owner.page.get_by_text("guest@example.com")).to_be_visible()

        guest_context = browser.new_context(viewport=PHONE)
        guest = Watched(guest_context.new_page())
        sign_up_in(guest.page, base, "guest@example.com")
        guest.page.get_by_role("link", name="Enter the code").click()
        guest.page.get_by_label("The code the charger's owner gave you").fill(code)
        guest.page.get_by_role("button", name="Accept").click()
        expect(guest.page.get_by_role("heading", name=f"Charger {made.serial}")).to_be_visible()
        guest.page.get_by_role("button", name="Show PIN").click()
        expect(guest.page.locator("#pin")).to_have_text(pin)
        guest.fits()

        owner.page.get_by_role("link", name="Charger Info").click()
        expect(owner.page.locator(".audit tbody tr").first).to_contain_text("guest@example.com")
        owner.page.get_by_role("link", name="People").click()
        owner.page.get_by_role("button", name="Revoke guest@example.com").click()
        expect(owner.page.get_by_role("status")).to_contain_text(
            "guest@example.com no longer has access"
        )
        expect(owner.page.get_by_role("status")).to_contain_text("re-key")

        guest.page.reload()
        expect(guest.page.get_by_role("alert")).to_contain_text("revoked your access")
        assert pin not in guest.page.content()
        for url in owner.urls + guest.urls:
            assert pin not in url and code not in url, url
        assert owner.errors == [] and guest.errors == []
        guest_context.close()
        owner_context.close()


def test_a_photo_of_the_sticker_then_the_passcode_pop_up_at_a_phones_width(
    browser: Browser, fleet: LocalFleet, tmp_path: Path
) -> None:
    """Commissioning by the sticker's photo (the file input a phone opens the camera for), then
    the owner of the optional-PIN charger sets up the passcode from the pop-up."""
    (made,) = fleet.provision(OPTIONAL.model, OPTIONAL.firmware, OPTIONAL.produced)
    (png,) = [p for p in factory.write_sticker(made.sticker, tmp_path) if p.suffix == ".png"]
    with serve(fleet.app) as base:
        context = browser.new_context(viewport=PHONE)
        watched = Watched(context.new_page())
        page = watched.page
        sign_up_in(page, base, "owner@example.com")
        page.get_by_role("link", name="Add a charger").click()
        page.get_by_label("Scan the sticker").set_input_files(png)
        watched.fits()
        page.get_by_role("button", name="Read the sticker").click()
        expect(page.get_by_role("heading", name="This charger is yours")).to_be_visible()
        page.get_by_role("link", name="Charger Info").click()
        expect(page.get_by_role("heading", name=f"Charger {made.serial}")).to_be_visible()

        pop_up = page.get_by_role("dialog", name="Set up a passcode?")
        expect(pop_up).to_be_visible()
        watched.fits()
        pop_up.get_by_role("button", name="Set up").click()

        expect(page.get_by_role("dialog")).to_have_count(0)
        status = page.locator("#setting-up")
        expect(status).to_contain_text("The connection will be interrupted; reconnect with the PIN")
        expect(status).to_contain_text("waiting")
        watched.fits()
        assert watched.errors == []  # the dialog needs no script and no inline style
        for url in watched.urls:
            assert made.sticker.claim_code not in url, url
        context.close()


def test_the_page_scales_a_cameras_photo_before_sending_it(
    browser: Browser, fleet: LocalFleet, tmp_path: Path
) -> None:
    """A 12-megapixel photo of the sticker leaves the browser scaled into SENT_SIDE pixels
    (static/photo.js), a few hundred KB instead of megabytes, and commissions the charger."""
    (made,) = fleet.provision(MANDATORY.model, MANDATORY.firmware, MANDATORY.produced)
    taken = tmp_path / "camera.jpg"
    taken.write_bytes(sticker_photo(made.sticker.encode()))
    bodies: list[bytes] = []

    async def observed(scope: Scope, receive: Receive, send: Send) -> None:
        """The fleet app, with the photo route's request bodies kept (what the browser sent)."""
        if scope["type"] != "http" or scope["path"] != "/app/commission/photo":
            return await fleet.app(scope, receive, send)
        body = bytearray()
        bodies.append(b"")

        async def kept() -> Message:
            message = await receive()
            body.extend(message.get("body", b""))
            bodies[-1] = bytes(body)
            return message

        await fleet.app(scope, kept, send)

    with serve(observed) as base:
        context = browser.new_context(viewport=PHONE)
        watched = Watched(context.new_page())
        page = watched.page
        sign_up_in(page, base, "owner@example.com")
        page.get_by_role("link", name="Add a charger").click()
        page.get_by_label("Scan the sticker").set_input_files(taken)
        page.get_by_role("button", name="Read the sticker").click()
        expect(page.get_by_role("heading", name="This charger is yours")).to_be_visible()
        (body,) = bodies
        assert len(body) < taken.stat().st_size // 4, (len(body), taken.stat().st_size)
        start = body.index(b"\xff\xd8\xff")  # the JPEG in the multipart body
        with Image.open(io.BytesIO(body[start:])) as image:
            assert max(image.size) == SENT_SIDE, image.size
        assert watched.errors == []
        context.close()
