"""Every screen of the web app passes axe-core in Chromium at a phone's width and on a desktop,
and is usable with the keyboard alone (docs/APP.md, "Accessibility").

The screens are `chargepin.lab.app_screens.SCREENS`, the list the screenshots in docs/app/ are
made from: a screen added there is checked here. axe-core (npm, pinned by tests/fleet/axe's lock
file) is injected into a context that bypasses the CSP, since the pages' policy refuses any
script they did not serve; the keyboard walk runs in the same opening of each screen, after
axe (every other browser test, and the screenshots, use normal contexts).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from chargepin.lab.app_screens import (
    DESKTOP,
    PHONE,
    SCREENS,
    Scene,
    Screen,
    Stage,
    Unreached,
    opened,
    staged,
)
from tests.helpers.browser import axe_script

REFLOW = {"width": 320, "height": 640}
"""WCAG 1.4.10: content reflows at 320 CSS px (a 1280 px screen zoomed to 400 %) without
sideways scrolling."""
BLOCKING = ("serious", "critical")
"""axe's impacts that fail a screen."""
STANDARDS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
"""The rule sets axe runs: WCAG 2.2 A and AA, and axe's best practices."""
NON_TEXT_CONTRAST = 3.0
"""WCAG 1.4.11: a focus ring stands out 3:1 from what surrounds it."""
FOCUSABLE = "a[href], button, input:not([type=hidden]), select, textarea, [tabindex]"


WALKS = ("sign-up", "charger-info", "people", "accept", "nearby", "troubleshooting")
"""The screens each walk starts at: a walk is `SCREENS` from there to the next walk's first, in
their order, on a stage of its own. Only a walk's own screens act before each of its screens;
the screens that build on another's act are in its walk (Set up after the optional-PIN Charger
Info; the lockout after the first wrong PIN, the controls after the lockout). Six tests rather
than one of 40 s, so the suite's workers share them; a screen added to `SCREENS` joins the walk
it is inserted in."""


def walks() -> list[tuple[Screen, ...]]:
    names = [screen.name for screen in SCREENS]
    starts = [names.index(name) for name in WALKS] + [len(SCREENS)]
    return [SCREENS[start:end] for start, end in pairwise(starts)]


@pytest.fixture
def stage(tmp_path: Path) -> Iterator[Stage]:
    """A fresh stage: a walk's screens act on it (commission, revoke, pair)."""
    with staged(tmp_path) as stage:
        yield stage


@pytest.fixture(scope="module")
def shared_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    """One stage for the module's checks of the harness, which change only their own page (a
    spoilt DOM, a refused script, a refused form): building a stage is five argon2 hashes."""
    with staged(tmp_path_factory.mktemp("stage")) as stage:
        yield stage


def violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.add_script_tag(path=str(axe_script()))
    found: list[dict[str, Any]] = page.evaluate(
        """async (tags) => (await axe.run(document, {
            runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]
        })).violations.map(v => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map(n => n.target.join(" ")).slice(0, 5)
        }))""",
        STANDARDS,
    )
    return [v for v in found if v["impact"] in BLOCKING]


def test_the_walks_take_every_screen_once_in_order() -> None:
    assert WALKS[0] == SCREENS[0].name
    assert [screen for walk in walks() for screen in walk] == list(SCREENS)
    assert all(walks())


@pytest.mark.slow
@pytest.mark.parametrize("walk", walks(), ids=lambda walk: walk[0].name)
def test_every_screen_passes_axe_reflows_at_320_px_and_works_with_the_keyboard(
    browser: Browser, stage: Stage, walk: tuple[Screen, ...]
) -> None:
    """Each screen of the walk, opened once: axe-core at a phone's width and on a desktop, no
    sideways scrolling at 320 px, then (back at a phone's width) Tab reaches every control in
    the page's order, each with a visible focus ring 3:1 against what it is drawn on, and then
    leaves the page (no trap). One opening per screen for all of it: the screens act
    (commission, revoke, pair), and opening each twice doubled the suite's longest test."""
    failures: dict[str, list[dict[str, Any]]] = {}
    too_wide: dict[str, int] = {}
    checked: list[Screen] = []
    for screen in walk:
        with opened(browser, stage, screen, PHONE, bypass_csp=True) as page:
            for viewport in (REFLOW, DESKTOP, PHONE):  # the same page, laid out again
                page.set_viewport_size({"width": viewport["width"], "height": viewport["height"]})
                where = f"{screen.name} at {viewport['width']} px"
                overflow: int = page.evaluate(
                    "document.documentElement.scrollWidth - document.documentElement.clientWidth"
                )
                if overflow > 0:
                    too_wide[where] = overflow
                if viewport is not REFLOW and (found := violations(page)):
                    failures[where] = found
            count = controls(page)
            walked, left = tab_walk(page, count + 1)  # every control, then off the page
            order = [step["index"] for step in walked]
            assert order == list(range(count)) and left, (screen.name, walked)
            for step in walked:
                assert step["visible"], (screen.name, step)
                assert step["outline"] != "none" and step["width"] >= 2, (screen.name, step)
                ring = contrast(step["colour"], step["around"])
                assert ring >= NON_TEXT_CONTRAST, (screen.name, ring, step)
        checked.append(screen)
    assert failures == {}
    assert too_wide == {}, "sideways scrolling (px too wide)"
    assert checked == list(walk)


def test_axe_finds_an_unlabelled_field_and_faint_text(
    browser: Browser, shared_stage: Stage
) -> None:
    """The check above can fail: the same harness on a screen spoilt on purpose."""
    with opened(browser, shared_stage, SCREENS[0], PHONE, bypass_csp=True) as page:
        page.evaluate(
            """() => {
                const field = document.createElement("input");
                const faint = document.createElement("p");
                faint.textContent = "hard to read";
                faint.style.color = "#d0d0d0";
                document.querySelector("main").append(field, faint);
            }"""
        )
        found = {v["id"] for v in violations(page)}
    assert {"label", "color-contrast"} <= found, found


def test_a_screen_whose_page_the_csp_refuses_something_is_not_reached(
    browser: Browser, shared_stage: Stage
) -> None:
    """Every screen is opened with its console watched: an inline script is refused, loudly."""

    def inline_script(page: Page, _scene: Scene) -> None:
        page.evaluate(
            """() => {
                const script = document.createElement("script");
                script.textContent = "document.title = 'injected'";
                document.body.append(script);
            }"""
        )

    spoilt = replace(SCREENS[0], act=inline_script)
    with (
        pytest.raises(Unreached, match="Content Security Policy"),
        opened(browser, shared_stage, spoilt, PHONE),
    ):
        pass


def test_a_refused_field_is_marked_and_described_by_the_problem(
    browser: Browser, shared_stage: Stage
) -> None:
    """What a screen reader says on the field of a refused form: invalid, and why."""
    (bad,) = [screen for screen in SCREENS if screen.name == "error-422-bad-input"]
    with opened(browser, shared_stage, bad, PHONE) as page:
        field = page.get_by_label("The code on the charger's sticker")
        expect(field).to_have_attribute("aria-invalid", "true")
        expect(field).to_have_accessible_description(
            re.compile("this is not a chargepin sticker.*printed under the QR code")
        )
        photo = page.get_by_label("Scan the sticker")
        expect(photo).not_to_have_attribute("aria-invalid", "true")

        # A photo that is not one: the photo's field is the one marked, not the typed code's.
        photo.set_input_files(
            {"name": "sticker.png", "mimeType": "image/png", "buffer": b"not a picture"}
        )
        page.get_by_role("button", name="Read the sticker").click()
        problem = page.get_by_role("alert")
        expect(problem).not_to_contain_text("not a chargepin sticker")
        expect(photo).to_have_attribute("aria-invalid", "true")
        expect(photo).to_have_accessible_description(re.compile(re.escape(problem.inner_text())))
        expect(field).not_to_have_attribute("aria-invalid", "true")
        expect(field).to_have_accessible_description(
            "Type it or paste it as printed under the QR code."
        )


WATCH_FOCUS = """(selector) => {
    window.focusWalk = [];
    document.addEventListener("focusin", (event) => {
        const el = event.target;
        const style = getComputedStyle(el);
        let around = el.parentElement;  // what the ring is drawn on
        while (around && getComputedStyle(around).backgroundColor === "rgba(0, 0, 0, 0)") {
            around = around.parentElement;
        }
        window.focusWalk.push({
            index: [...document.querySelectorAll(selector)].indexOf(el),
            label: el.outerHTML.slice(0, 80),
            outline: style.outlineStyle, width: parseFloat(style.outlineWidth),
            visible: el.matches(":focus-visible"), colour: style.outlineColor,
            around: around ? getComputedStyle(around).backgroundColor : "rgb(255, 255, 255)"
        });
    });
}"""
"""Records each element that gets the focus: its place among the page's controls, its ring."""


def tab_walk(page: Page, presses: int) -> tuple[list[dict[str, Any]], bool]:
    """Tab pressed `presses` times from the top of the page: each element it focused, and
    whether the focus then left the page (no trap)."""
    page.evaluate(WATCH_FOCUS, FOCUSABLE)
    for _ in range(presses):
        page.keyboard.press("Tab")
    walked: list[dict[str, Any]] = page.evaluate("window.focusWalk")
    left: bool = page.evaluate(
        "!document.activeElement || document.activeElement === document.body"
    )
    return walked, left


def luminance(css: str) -> float:
    """WCAG's relative luminance of an opaque `rgb(r, g, b)` colour."""
    channels = [int(part) / 255 for part in re.findall(r"\d+", css)[:3]]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(first: str, second: str) -> float:
    """WCAG's contrast ratio of two colours (1 to 21)."""
    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_contrast_ratio_is_wcags() -> None:
    assert contrast("rgb(0, 0, 0)", "rgb(255, 255, 255)") == pytest.approx(21)
    assert contrast("rgb(240, 165, 0)", "rgb(255, 255, 255)") == pytest.approx(2.08, abs=0.01)


def controls(page: Page) -> int:
    count: int = page.evaluate(
        "(selector) => [...document.querySelectorAll(selector)]"
        ".filter(el => !el.disabled && el.getClientRects().length).length",
        FOCUSABLE,
    )
    return count
