"""Every screen of the web app, each reached in a real browser on one fleet with fixed data: the
one list that the accessibility tests (tests/fleet/test_web_a11y.py: axe-core, the keyboard)
check and that `chargepin lab screenshots` photographs into docs/app/ (docs/APP.md, "Screens,
accessibility and screenshots").

A screen is whose browser it is (an account of the scene, or nobody signed in), the address it
opens and what the person then does there (fill a form, press a button), and what proves it was
reached: its heading and the HTTP status of the page. Another part of the app adds its screens
to `SCREENS` (and, if it needs them, its data to `Scene`); the tests and the screenshots follow.

The scene is made with the fleet's own service functions on a fresh database, on a fake clock,
so names, serials and times are the same on every run (the PINs and codes stay random: they
come from the factory's and the vault's secrets). A browser signs in by the session cookie of
a login made for it (`accounts.start_session`), as the sign-in page would set it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from chargepin.app.radio import Radio, RadioOptions
from chargepin.app.server import create_app as create_radio_app
from chargepin.charger.service import LockoutOverrides
from chargepin.clock import FakeClock
from chargepin.core import bond_statement
from chargepin.core.bond_statement import BondedPhone
from chargepin.core.ocpp_events import SecurityEventType
from chargepin.core.policy import FirmwareVersion
from chargepin.core.provisioning import ProvisioningBundle
from chargepin.fleet import accounts, chargers, claims, members
from chargepin.fleet.access import require_member
from chargepin.fleet.csms import events, gateways, outbox, registry
from chargepin.fleet.db import transaction
from chargepin.fleet.factory import provision
from chargepin.fleet.times import utc_now
from chargepin.fleet.web.pages import WEB_APP_VERSION
from chargepin.fleet.web.sessions import SESSION_COOKIE
from chargepin.lab.live_server import serve
from chargepin.lab.local_fleet import PASSWORD, LocalFleet
from chargepin.lab.radio_air import Air
from chargepin.lab.testbed import ChargerSpec
from chargepin.phone.flows import PhoneOptions

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

PHONE = {"width": 360, "height": 740}
"""A phone's viewport: the width every page is designed for first."""
DESKTOP = {"width": 1280, "height": 800}
WAIT_MS = 10_000
"""How long a step waits for its condition (it returns as soon as it holds)."""

OWNER = "owner@example.com"
FAMILY = "family@example.com"
"""An invited user who accepted: a member of the owner's Pulsar Max."""
FORMER = "former@example.com"
"""A member the owner revoked."""
GUEST = "guest@example.com"
"""A member the owner revokes on the People screen (with the re-key)."""
NEWCOMER = "new@example.com"
"""An account with no charger yet."""
NEIGHBOUR = "neighbour@example.com"
"""The address the owner invites on the People screen."""
MAX = ("Pulsar Max", "6.11.2")
PLUS = ("Pulsar Plus", "6.8.0")
PRODUCED = dt.date(2025, 9, 1)
OWNER_PHONE = "C4:11:22:33:44:55"
FAMILY_PHONE = "F0:F1:F2:F3:F4:F5"
CHOSEN_PIN = "730418"
"""The PIN the owner chose earlier: a change_pin command waiting for the charger."""
NEXT_PIN = "604917"
"""The PIN the owner sends on the Change PIN screen."""
WEAK_PIN = "123456"
"""A PIN the weak-PIN rule refuses (the digits count straight up)."""
NOT_A_STICKER = "the charger's serial, I think CP1"


@dataclass
class Scene:
    """The data every screen is shown with: a few accounts and three chargers."""

    fleet: LocalFleet
    clock: FakeClock
    max_serial: str
    plus_serial: str
    spare_sticker: str
    """The sticker of a charger nobody has claimed: the Add a charger screen claims it."""
    sessions: dict[str, str] = field(default_factory=dict)
    """A login token for each account, by e-mail."""
    max_bundle: ProvisioningBundle | None = field(default=None, repr=False)
    """The Pulsar Max as the factory made it (its secret): the charger radio mode's screens
    meet on the virtual radio."""

    @classmethod
    def build(cls, fleet: LocalFleet, clock: FakeClock) -> Scene:
        """Accounts, chargers (CP00000001 a Pulsar Max, CP00000002 a Pulsar Plus, both the
        owner's; CP00000003 unclaimed), members, phones, reveals, events, a queued PIN change."""
        state = fleet.state
        now = utc_now(clock)
        with transaction(state.sessions) as db:
            users = {
                email: accounts.register(db, state.passwords, email, PASSWORD, None, clock.now())
                for email in (OWNER, FAMILY, FORMER, GUEST, NEWCOMER)
            }
            max_made, plus_made, spare = (
                provision(
                    db,
                    state.vault,
                    count=1,
                    model=model,
                    firmware=FirmwareVersion.parse(firmware),
                    produced=PRODUCED,
                    now=now,
                )[0]
                for model, firmware in (MAX, PLUS, MAX)
            )
            owner = users[OWNER]
            for made_one in (max_made, plus_made):
                claims.commission(
                    db,
                    state.vault,
                    owner,
                    None,
                    made_one.sticker.encode(),
                    WEB_APP_VERSION,
                    clock.now(),
                )
            serial = max_made.serial
            for email in (FAMILY, FORMER, GUEST):
                lifetime = state.settings.invitation_lifetime
                invitation = members.invite(db, owner, serial, email, now, lifetime)
                members.accept(db, users[email], invitation.code, now)
            for email, address, sequence in ((OWNER, OWNER_PHONE, 1), (FAMILY, FAMILY_PHONE, 2)):
                statement = _bond_statement(max_made.secret, serial, address, sequence)
                members.relay_bond(db, state.vault, users[email], serial, statement, now)
            charger, _member = require_member(db, users[FAMILY], serial)
            for email in (FAMILY, GUEST):
                chargers.reveal(
                    db, state.vault, charger, users[email], "android-2.4.0", clock.now()
                )
            members.revoke(db, owner, serial, users[FORMER].id, now)
            outbox.request(db, state.vault, owner, serial, "change_pin", {"pin": CHOSEN_PIN}, now)
            # The scene's charger stays online however long the screenshots take.
            gateways.staged(db, "process-1")
            registry.take(db, charger.id, "connection-1", "process-1", now)
            charger_id = charger.id
            expires = now + dt.timedelta(seconds=state.settings.token_lifetime)
            tokens = {
                email: accounts.start_session(db, user, expires) for email, user in users.items()
            }
        _reported(fleet, charger_id, now)
        return cls(
            fleet, clock, serial, plus_made.serial, spare.sticker.encode(), tokens, max_made.bundle
        )


@dataclass(frozen=True)
class Stage:
    """A scene being served: where the screens are, and their data."""

    scene: Scene
    base: str
    """The server's address, `http://127.0.0.1:<port>`."""
    radio_base: str
    """The radio app's (`chargepin app`) in front of the same fleet: radio mode's screens."""


@contextmanager
def staged(directory: Path) -> Iterator[Stage]:
    """The fleet on a fresh SQLite file in `directory`, on a fake clock, with the scene built
    and served on 127.0.0.1 until the block ends: what the tests and the screenshots walk.
    Radio mode's screens are served by the radio app in front of it, whose phone meets the
    scene's Pulsar Max (a real charger daemon, the same clock) on a virtual radio."""
    clock = FakeClock()
    fleet = LocalFleet.start(f"sqlite:///{directory / 'fleet.db'}", clock)
    try:
        scene = Scene.build(fleet, clock)
        assert scene.max_bundle is not None
        spec = replace(ChargerSpec.from_bundle(scene.max_bundle), overrides=RADIO_LOCKOUT)
        air = Air(directory, spec, clock)
        try:
            with serve(fleet.app) as base:
                phone = PhoneOptions(transport=air.transport(1), bonds=directory / "app-bonds.db")
                radio = Radio(RadioOptions(phone, scan_seconds=RADIO_SCAN_SECONDS))
                with serve(create_radio_app(base, radio), lifespan=True) as radio_base:
                    yield Stage(scene, base, radio_base)
        finally:
            air.close()
    finally:
        fleet.dispose()


RADIO_SCAN_SECONDS = 0.5
"""How long radio mode's Nearby listens (the daemon advertises every 20 ms)."""
RADIO_LOCKOUT = LockoutOverrides(failures=2, window=300.0, duration=300.0)
"""The Max on the air locks at its second wrong PIN: troubleshooting, then the lockout."""


def _bond_statement(secret: bytes, serial: str, address: str, sequence: int) -> bytes:
    """A phone's bond as the charger states it after pairing (what a member's app relays)."""
    ltk = bytes(range(16))
    bond = bond_statement.bond_id(secret, serial, ltk)
    return bond_statement.make(secret, serial, BondedPhone(address, sequence, bond))


def _reported(fleet: LocalFleet, charger_id: int, now: dt.datetime) -> None:
    """What the charger told the CSMS: a start, wrong PINs and the lockout they caused."""
    reports = [
        (SecurityEventType.STARTUP, None, -3600),
        (SecurityEventType.LOGIN_FAILED, {"count": 3, "epoch": 0}, -600),
        (
            SecurityEventType.PIN_LOCKOUT,
            {"failures": 5, "duration": 300, "phone": "aa:bb:cc:dd:ee:ff"},
            -60,
        ),
    ]
    batch = [
        events.IncomingEvent(
            charger_id,
            kind,
            (now + dt.timedelta(seconds=offset)).isoformat(),
            None if info is None else json.dumps(info),
            None,
            now + dt.timedelta(seconds=offset),
        )
        for kind, info, offset in reports
    ]
    written = events.write_batch(fleet.state.engine, batch)
    if not all(done is True for done in written):
        raise RuntimeError(f"the scene's security events were not stored: {written}")


Act = Callable[["Page", Scene], None]


@dataclass(frozen=True)
class Screen:
    """One screen: `docs/app/<name>.png`, whose browser, where it opens, what is done there."""

    name: str
    caption: str
    """What the screen shows, in the README's gallery."""
    viewer: str | None
    """The account whose browser it is (its session cookie), or None: nobody signed in."""
    path: str
    """Where the browser goes first; `{max}` and `{plus}` are the scene's serials."""
    heading: str
    """The page's h1 once the screen is reached."""
    status: int = 200
    """The HTTP status of the page that shows the screen."""
    act: Act | None = None
    """What the person does on `path` to reach the screen (a form sent, a button pressed)."""
    shot: bool = True
    """Photographed for docs/app/ (False: a state of a screen already there, checked only)."""
    radio: bool = False
    """Served by the radio app (`chargepin app`, radio mode), not by the fleet."""


def _commission(code: Callable[[Scene], str], then: str) -> Act:
    """The sticker's code typed and sent; done once `then` (a CSS selector) is on the page."""

    def act(page: Page, scene: Scene) -> None:
        page.get_by_label("The code on the charger's sticker").fill(code(scene))
        page.get_by_role("button", name="Add the charger").click()
        page.locator(then).wait_for()

    return act


def _show_pin(page: Page, _scene: Scene) -> None:
    page.get_by_role("button", name="Show PIN").click()
    page.locator("#pin").wait_for()


def _change_pin(pin: str, then: str) -> Act:
    """A new PIN typed in Charger Info's Change PIN and sent; done once `then` is shown."""

    def act(page: Page, _scene: Scene) -> None:
        page.get_by_label("New 6-digit PIN").fill(pin)
        page.get_by_role("button", name="Change PIN").click()
        page.locator(then).wait_for()

    return act


def _revoke_guest(page: Page, _scene: Scene) -> None:
    page.get_by_role("listitem").filter(has_text=GUEST).get_by_label("also re-key").check()
    page.get_by_role("button", name=f"Revoke {GUEST}").click()
    page.get_by_role("status").filter(has_text="no longer has access").wait_for()


def _set_up_passcode(page: Page, _scene: Scene) -> None:
    page.get_by_role("dialog").get_by_role("button", name="Set up", exact=True).click()
    page.locator("#setting-up").wait_for()


def _not_a_photo(page: Page, _scene: Scene) -> None:
    page.get_by_label("Scan the sticker").set_input_files(
        {"name": "sticker.png", "mimeType": "image/png", "buffer": b"not a picture"}
    )
    page.get_by_role("button", name="Read the sticker").click()
    page.get_by_role("alert").wait_for()


def _invite(page: Page, _scene: Scene) -> None:
    page.get_by_label("Invite by e-mail").fill(NEIGHBOUR)
    page.get_by_role("button", name="Invite", exact=True).click()
    page.locator("#invitation-code").wait_for()


def _connect(page: Page, scene: Scene) -> None:
    """Radio mode: Connect on Nearby (this phone has no bond yet: the pairing screen)."""
    page.get_by_role("button", name=f"Connect to {scene.max_serial}").click()
    page.locator("#pin").wait_for()


def _type_pin(*, wrong: bool) -> Act:
    """Radio mode: Connect, then type the PIN shown (or, `wrong`, another) and Pair."""

    def act(page: Page, scene: Scene) -> None:
        _connect(page, scene)
        shown = page.locator("#pin").inner_text()
        typed = ("918273" if shown != "918273" else "827364") if wrong else shown
        page.get_by_label("Type the PIN to pair").fill(typed)
        page.get_by_role("button", name="Pair").click()

    return act


def _past_the_lock(page: Page, scene: Scene) -> None:
    """Radio mode: Connect while the Max is locked (the countdown), then Try again: the
    fleet's PIN, the owner's phone admitted past the lock."""
    page.get_by_role("button", name=f"Connect to {scene.max_serial}").click()
    page.locator("#countdown").wait_for()
    page.get_by_role("button", name="Try again").click()


NOT_POSSIBLE = "Not possible"

SCREENS: tuple[Screen, ...] = (
    Screen("sign-up", "Sign up", None, "/app/signup", "Sign up"),
    Screen("sign-in", "Sign in", None, "/app/signin", "Sign in"),
    Screen("my-chargers-empty", "My chargers, none yet", NEWCOMER, "/app/chargers", "My chargers"),
    Screen(
        "my-chargers",
        "My chargers: online, locked, PIN on/off",
        OWNER,
        "/app/chargers",
        "My chargers",
    ),
    Screen(
        "add-a-charger",
        "Add a charger by its sticker's code",
        NEWCOMER,
        "/app/commission",
        "Add a charger",
    ),
    Screen(
        "commissioned",
        "This charger is yours, and its PIN",
        NEWCOMER,
        "/app/commission",
        "This charger is yours",
        act=_commission(lambda scene: scene.spare_sticker, "#pin"),
    ),
    Screen(
        "charger-info",
        "Charger Info (an invited user), without the PIN",
        FAMILY,
        "/app/chargers/{max}",
        "Charger {max}",
    ),
    Screen(
        "charger-info-pin",
        "Charger Info after Show PIN",
        FAMILY,
        "/app/chargers/{max}",
        "Charger {max}",
        act=_show_pin,
    ),
    Screen(
        "charger-info-owner",
        "Charger Info (owner): Change PIN, what was sent, who saw the PIN",
        OWNER,
        "/app/chargers/{max}",
        "Charger {max}",
    ),
    Screen(
        "charger-info-optional",
        "Charger Info of an optional-PIN charger: the passcode pop-up",
        OWNER,
        "/app/chargers/{plus}",
        "Charger {plus}",
    ),
    Screen(
        "passcode-set-up",
        "Set up: the connection will be interrupted; reconnect with the PIN",
        OWNER,
        "/app/chargers/{plus}",
        "Charger {plus}",
        act=_set_up_passcode,
    ),
    Screen(
        "people",
        "People: a new invitation's code, members, paired phones",
        OWNER,
        "/app/chargers/{max}/people",
        "People of {max}",
        act=_invite,
    ),
    Screen(
        "charger-info-pin-sent",
        "Charger Info: a new PIN sent to the charger",
        OWNER,
        "/app/chargers/{max}",
        "Charger {max}",
        act=_change_pin(NEXT_PIN, "#sent"),
        shot=False,
    ),
    Screen(
        "charger-info-weak-pin",
        "Charger Info: a weak PIN refused (422)",
        OWNER,
        "/app/chargers/{max}",
        "Charger {max}",
        status=422,
        act=_change_pin(WEAK_PIN, "[role=alert]"),
        shot=False,
    ),
    Screen(
        "people-revoked",
        "People: a member revoked, their phones and the re-key",
        OWNER,
        "/app/chargers/{max}/people",
        "People of {max}",
        act=_revoke_guest,
        shot=False,
    ),
    Screen(
        "accept",
        "Accept an invitation",
        NEWCOMER,
        "/app/invitations/accept",
        "Accept an invitation",
    ),
    Screen(
        "security-events",
        "Security events",
        OWNER,
        "/app/chargers/{max}/events",
        "Security events of {max}",
    ),
    Screen(
        "error-404",
        "A charger that is not yours (404)",
        NEWCOMER,
        "/app/chargers/{max}",
        NOT_POSSIBLE,
        status=404,
    ),
    Screen(
        "error-403-revoked",
        "A revoked member (403)",
        FORMER,
        "/app/chargers/{max}",
        NOT_POSSIBLE,
        status=403,
    ),
    Screen(
        "error-422-bad-input",
        "Bad input, said on the page (422)",
        NEWCOMER,
        "/app/commission",
        "Add a charger",
        status=422,
        act=_commission(lambda _scene: NOT_A_STICKER, "[role=alert]"),
    ),
    Screen(
        "error-photo-refused",
        "A photo that is not one, refused on the page (422)",
        NEWCOMER,
        "/app/commission",
        "Add a charger",
        status=422,
        act=_not_a_photo,
        shot=False,
    ),
    Screen(
        "nearby",
        "Radio mode: Nearby, the chargers in range",
        OWNER,
        "/app/nearby",
        "Nearby",
        radio=True,
    ),
    Screen(
        "pairing",
        "Radio mode: pairing, the PIN to type",
        OWNER,
        "/app/nearby",
        "Pair with {max}",
        act=_connect,
        radio=True,
    ),
    Screen(
        "troubleshooting",
        "Radio mode: that PIN did not work, the charger's PIN and Try again",
        OWNER,
        "/app/nearby",
        "That PIN did not work",
        act=_type_pin(wrong=True),
        radio=True,
    ),
    Screen(
        "lockout",
        "Radio mode: locked out, counting down",
        OWNER,
        "/app/nearby",
        "Charger {max} is unavailable",
        act=_type_pin(wrong=True),
        radio=True,
    ),
    Screen(
        "controls",
        "Radio mode: a connected charger's controls",
        OWNER,
        "/app/nearby",
        "Charger {max}",
        act=_past_the_lock,
        radio=True,
    ),
)
"""Every screen, in the order the gallery shows them and the walks open them, on one scene: a
screen whose act changes the data (Set up, a revocation, a wrong PIN) comes after those that
show the data as it was; radio mode's last (a wrong PIN moves the Max to its next PIN)."""


def _fill(text: str, scene: Scene) -> str:
    return text.format(max=scene.max_serial, plus=scene.plus_serial)


FAILED_LOAD = "Failed to load resource: the server responded with a status of"
"""How Chromium logs a page answered 4xx: on an error screen that is the point, not a fault."""


class Unreached(AssertionError):
    """A screen did not show what it must (its heading, its page's status), or the browser
    logged an error on the way (a CSP refusal is one)."""


@contextmanager
def opened(
    browser: Browser,
    stage: Stage,
    screen: Screen,
    viewport: dict[str, int],
    *,
    bypass_csp: bool = False,
) -> Iterator[Page]:
    """The screen in a browser context of its own (its viewer's cookie), once reached.

    `bypass_csp` only for injecting axe-core: the pages' CSP refuses any script they did not
    serve, which is the point of it.
    """
    base, scene = (stage.radio_base if screen.radio else stage.base), stage.scene
    context: BrowserContext = browser.new_context(
        viewport={"width": viewport["width"], "height": viewport["height"]},
        bypass_csp=bypass_csp,
        reduced_motion="reduce",
    )
    try:
        if screen.viewer is not None:
            context.add_cookies(
                [
                    {
                        "name": SESSION_COOKIE,
                        "value": scene.sessions[screen.viewer],
                        "url": f"{base}/app",
                        "httpOnly": True,
                        "sameSite": "Lax",
                    }
                ]
            )
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        statuses: list[int] = []
        page.on(
            "response",
            lambda answer: (
                statuses.append(answer.status)
                if answer.request.is_navigation_request() and answer.frame == page.main_frame
                else None
            ),
        )
        errors: list[str] = []
        page.on(
            "console",
            lambda message: (
                errors.append(message.text)
                if message.type == "error" and not message.text.startswith(FAILED_LOAD)
                else None
            ),
        )
        page.goto(base + _fill(screen.path, scene))
        if screen.act is not None:
            screen.act(page, scene)
        heading = page.get_by_role("heading", level=1, name=_fill(screen.heading, scene))
        heading.wait_for()
        page.wait_for_load_state()
        if not statuses or statuses[-1] != screen.status:
            raise Unreached(f"{screen.name}: answered {statuses}, expected {screen.status} last")
        if errors:  # a stylesheet or script the CSP refused is one
            raise Unreached(f"{screen.name}: errors in the browser's console: {errors}")
        yield page
    finally:
        context.close()
