"""The radio app (`chargepin app`) in Debian's Chromium: the fleet's pages forwarded and the
Bluetooth screens, against a real charger daemon on the virtual radio and a real fleet, each
behind a uvicorn on 127.0.0.1 (docs/APP.md, "Radio mode"). Every step waits for a condition on
the page (10 s at most), never a fixed time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from chargepin.charger.service import LockoutOverrides
from chargepin.core.epochs import epoch_pin
from chargepin.fleet.web.sessions import SESSION_COOKIE
from tests.fleet.test_web_browser import DESKTOP, PHONE, Watched
from tests.helpers.fleet_accounts import PASSWORD
from tests.helpers.radio_app import World, radio_world

pytestmark = pytest.mark.slow


def signed_in(
    browser: Browser, world: World, email: str, viewport: dict[str, int], *, script: bool = True
) -> Watched:
    """A browser context signed in through the radio app (the fleet's page, forwarded)."""
    context = browser.new_context(viewport=viewport, java_script_enabled=script)
    watched = Watched(context.new_page())
    page = watched.page
    page.goto(f"{world.app_url}/app/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="My chargers")).to_be_visible()
    return watched


def connect_from_nearby(page: Page, serial: str) -> None:
    page.get_by_role("link", name="Nearby").click()
    expect(page.get_by_role("heading", name="Nearby")).to_be_visible()
    page.get_by_role("button", name=f"Connect to {serial}").click()


def test_first_pairing_with_the_shown_pin_controls_and_a_bonded_reconnect(
    browser: Browser, tmp_path: Path
) -> None:
    with radio_world(tmp_path) as world:
        email = world.owner()
        pin = epoch_pin(world.secret, world.serial, 0).digits
        watched = signed_in(browser, world, email, PHONE)
        page = watched.page

        connect_from_nearby(page, world.serial)
        expect(page.get_by_role("heading", name=f"Pair with {world.serial}")).to_be_visible()
        expect(page.locator("#pin")).to_have_text(pin)
        watched.fits()
        page.get_by_label("Type the PIN to pair").fill("12 34")
        page.get_by_role("button", name="Pair").click()
        expect(page.get_by_role("alert")).to_contain_text("6 digits")
        expect(page.get_by_label("Type the PIN to pair")).to_have_value("")
        page.get_by_label("Type the PIN to pair").fill(pin)
        page.get_by_role("button", name="Pair").click()

        expect(page.get_by_role("heading", name=f"Charger {world.serial}")).to_be_visible()
        expect(page.get_by_text("Paired with the PIN.")).to_be_visible()
        page.get_by_role("button", name="Start charging").click()
        expect(page.locator("#state")).to_have_text("charging")
        page.get_by_label("Current limit").fill("99999")
        page.get_by_role("button", name="Set the limit").click()
        expect(page.get_by_role("alert")).to_contain_text("6-32 A")
        expect(page.get_by_label("Current limit")).to_have_value("99999")
        page.get_by_label("Current limit").fill("16")
        page.get_by_role("button", name="Set the limit").click()
        expect(page.locator("#limit")).to_have_text("16 A")
        page.get_by_role("button", name="Stop charging").click()
        expect(page.locator("#state")).to_have_text("idle")
        watched.fits()
        assert world.air.on_daemon(lambda daemon: daemon.evse.status.current_limit) == 16

        # Bonded: straight to the controls, no PIN screen.
        page.get_by_role("button", name="Disconnect").click()
        expect(page.get_by_role("heading", name="Nearby")).to_be_visible()
        page.get_by_role("button", name=f"Connect to {world.serial}").click()
        expect(page.get_by_role("heading", name=f"Charger {world.serial}")).to_be_visible()
        expect(page.get_by_text("Connected.")).to_be_visible()
        expect(page.locator("#limit")).to_have_text("16 A")
        watched.fits()

        (cookie,) = [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
        for url in watched.urls:
            assert pin not in url and cookie["value"] not in url, url
        assert watched.errors == []
        page.context.close()


def test_a_wrong_pin_shows_the_chargers_pin_and_try_again_pairs(
    browser: Browser, tmp_path: Path
) -> None:
    with radio_world(tmp_path) as world:
        email = world.owner()
        watched = signed_in(browser, world, email, DESKTOP)
        page = watched.page
        connect_from_nearby(page, world.serial)
        shown = page.locator("#pin").inner_text()
        page.get_by_label("Type the PIN to pair").fill("918273" if shown != "918273" else "827364")
        page.get_by_role("button", name="Pair").click()

        expect(page.get_by_role("heading", name="That PIN did not work")).to_be_visible()
        now = world.charger_pin()  # hardened: the failure moved the charger to its next PIN
        assert now != shown
        expect(page.get_by_text("the charger's PIN is")).to_contain_text(now)
        page.get_by_role("button", name="Try again").click()
        expect(page.get_by_role("heading", name=f"Charger {world.serial}")).to_be_visible()
        expect(page.get_by_text("Paired with the PIN.")).to_be_visible()
        assert all(shown not in url and now not in url for url in watched.urls)
        assert watched.errors == []
        page.context.close()


@pytest.mark.parametrize("script", [True, False], ids=["script", "no-script"])
def test_a_lockout_counts_down_and_retries_by_itself(
    browser: Browser, tmp_path: Path, script: bool
) -> None:
    """With script the page counts down and sends Try again at 0:00; without, the Try again
    button does the same (the guided retry is admitted past the lock)."""
    lockout = LockoutOverrides(failures=1, window=3.0, duration=3.0)
    with radio_world(tmp_path, spec={"overrides": lockout}) as world:
        email = world.owner()
        watched = signed_in(browser, world, email, PHONE, script=script)
        page = watched.page
        connect_from_nearby(page, world.serial)
        shown = page.locator("#pin").inner_text()
        page.get_by_label("Type the PIN to pair").fill("918273" if shown != "918273" else "827364")
        page.get_by_role("button", name="Pair").click()

        heading = page.get_by_role("heading", name=f"Charger {world.serial} is unavailable")
        expect(heading).to_be_visible()
        expect(page.get_by_role("status")).to_contain_text("Unavailable, try again in 0:0")
        watched.fits()
        if script:
            countdown = page.locator("#countdown")
            first = countdown.inner_text()
            expect(countdown).not_to_have_text(first)  # it counts down, a second at a time
            # At 0:00 the page sends Try again by itself: the fleet's PIN, admitted past the lock.
        else:
            page.get_by_role("button", name="Try again").click()
        expect(page.get_by_role("heading", name=f"Charger {world.serial}")).to_be_visible()
        expect(page.get_by_text("Paired with the PIN.")).to_be_visible()
        assert watched.errors == []  # countdown.js is ours, allowed by the CSP
        page.context.close()


def test_an_app_too_old_for_the_fleet_says_update_the_app(browser: Browser, tmp_path: Path) -> None:
    with radio_world(tmp_path, min_app_version="9.0.0") as world:
        email = world.owner(app_version="9.0.0")  # commissioned from an up-to-date phone
        watched = signed_in(browser, world, email, PHONE)
        page = watched.page
        connect_from_nearby(page, world.serial)
        expect(page.get_by_role("heading", name="Update the app")).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text("X-App-Version")
        watched.fits()
        page.context.close()


def test_the_owner_sets_up_the_passcode_over_bluetooth_and_reconnects_with_the_pin(
    browser: Browser, tmp_path: Path
) -> None:
    with radio_world(tmp_path, model="Volt Home", firmware="6.9.0") as world:  # optional PIN
        email = world.owner()
        watched = signed_in(browser, world, email, PHONE)
        page = watched.page
        connect_from_nearby(page, world.serial)  # PIN off: no PIN to type
        expect(page.get_by_role("heading", name=f"Charger {world.serial}")).to_be_visible()
        offer = page.get_by_role("dialog", name="Set up a passcode?")
        expect(offer).to_be_visible()
        watched.fits()
        offer.get_by_role("button", name="Not now").click()
        expect(page.get_by_role("heading", name=f"Charger {world.serial}")).to_be_visible()
        expect(offer).to_have_count(0)
        page.reload()
        expect(offer).to_have_count(0)  # for this session

        # An invited user on the same phone is not offered it, and a forged Set up is refused
        # by the fleet (the enable_pin ticket is the owner's): the PIN stays off.
        guest = signed_in(browser, world, world.guest(email, "guest@example.com"), PHONE)
        guest.page.goto(f"{world.app_url}/app/nearby/{world.serial}")
        expect(guest.page.get_by_role("heading", name=f"Charger {world.serial}")).to_be_visible()
        expect(guest.page.get_by_role("dialog")).to_have_count(0)
        token = guest.page.locator('input[name="csrf"]').first.get_attribute("value")
        forged = guest.page.request.post(
            f"{world.app_url}/app/nearby/{world.serial}/enable-pin",
            form={"csrf": token or ""},
            headers={"Origin": world.app_url},
        )
        assert forged.status == 403, forged.text()
        assert "owner" in forged.text()
        assert not world.air.on_daemon(lambda daemon: daemon.store.pin_enabled)
        guest.page.context.close()

        # Signed in again (a new session), the owner is offered it again and accepts.
        again = signed_in(browser, world, email, PHONE)
        again.page.goto(f"{world.app_url}/app/nearby/{world.serial}")
        offer = again.page.get_by_role("dialog", name="Set up a passcode?")
        offer.get_by_role("button", name="Set up").click()
        expect(again.page.get_by_role("status")).to_contain_text(
            "The connection will be interrupted; reconnect with the PIN"
        )
        assert world.air.on_daemon(lambda daemon: daemon.store.pin_enabled)
        pin = world.charger_pin()
        again.page.get_by_role("button", name="Reconnect").click()
        expect(again.page.get_by_role("heading", name=f"Pair with {world.serial}")).to_be_visible()
        expect(again.page.locator("#pin")).to_have_text(pin)
        again.page.get_by_label("Type the PIN to pair").fill(pin)
        again.page.get_by_role("button", name="Pair").click()
        expect(again.page.get_by_text("Paired with the PIN.")).to_be_visible()
        expect(again.page.get_by_role("dialog")).to_have_count(0)
        again.fits()
        assert watched.errors == [] and again.errors == []
        for url in watched.urls + again.urls:
            assert pin not in url, url
        page.context.close()
        again.page.context.close()
