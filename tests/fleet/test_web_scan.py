"""Commissioning by a photo of the sticker (docs/APP.md, "Scanning the sticker"), over real HTTP
through the ASGI app: the factory's own sticker image read and claimed, and every hostile or
careless upload answered on the page."""

from __future__ import annotations

import io
import logging
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import segno
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from chargepin.clock import FakeClock
from chargepin.core.epochs import epoch_pin
from chargepin.fleet import factory
from chargepin.fleet.sticker_photo import MAX_PIXELS, PHOTO_MAX_BYTES
from chargepin.fleet.web.uploads import PHOTO_BODY_BYTES
from tests.helpers.fleet_factory import provision
from tests.helpers.fleet_settings import start_fleet
from tests.helpers.web_app import browser_for, csrf_of, origin_of, sign_up

SCAN = "/app/commission/photo"


def sticker_png(made: Any, folder: Path) -> bytes:
    """The sticker exactly as the factory prints it (fleet/factory.py, segno), as PNG."""
    paths = factory.write_sticker(made.sticker, folder)
    (png,) = [p for p in paths if p.suffix == ".png"]
    return png.read_bytes()


def photographed(*stickers: bytes, angle: float = 7.0) -> bytes:
    """A photo-like JPEG: the stickers on a grey, uneven background, turned a little."""
    scene = Image.new("L", (1600, 1200), 150)
    ImageDraw.Draw(scene).rectangle((0, 900, 1600, 1200), fill=110)
    for index, png in enumerate(stickers):
        qr = Image.open(io.BytesIO(png)).convert("L").resize((420, 420))
        scene.paste(qr, (180 + index * 640, 300))
    out = io.BytesIO()
    scene.rotate(angle, fillcolor=150).save(out, "JPEG", quality=80)
    return out.getvalue()


def qr_png(text: str) -> bytes:
    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="png", scale=8, border=4)
    return out.getvalue()


def huge_png(width: int, height: int) -> bytes:
    """A tiny file that declares a huge image (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def scan(browser: TestClient, photo: bytes, name: str = "sticker.jpg") -> httpx.Response:
    """Send a photo as the page's form does: multipart, with the page's CSRF token."""
    token = csrf_of(browser.get("/app/commission"))
    return browser.post(
        SCAN,
        data={"csrf": token},
        files={"photo": (name, photo, "image/jpeg")},
        headers=origin_of(browser),
        follow_redirects=False,
    )


@pytest.fixture
def sqlite_client(tmp_path: Path, fleet_clock: FakeClock) -> Iterator[TestClient]:
    """The app on a SQLite file only: for what happens before the database is asked, which
    PostgreSQL would only repeat (tests/fleet/conftest.py's `client` runs on both)."""
    fleet = start_fleet(f"sqlite:///{tmp_path / 'fleet.db'}", fleet_clock)
    with TestClient(fleet.app) as test_client:
        yield test_client
    fleet.dispose()


def owner(client: TestClient) -> TestClient:
    browser = browser_for(client)
    sign_up(browser, "installer@example.com")
    return browser


def test_the_add_a_charger_page_offers_the_camera(sqlite_client: TestClient) -> None:
    client = sqlite_client
    page = owner(client).get("/app/commission").text
    assert 'enctype="multipart/form-data"' in page
    assert 'type="file" accept="image/*" capture="environment"' in page
    assert 'id="code"' in page  # typing or pasting stays


def test_a_photo_of_the_factory_s_sticker_commissions_the_charger(
    client: TestClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    first, second = provision(client, count=2)
    browser = owner(client)

    # The sticker image itself, as a file chosen on a desktop.
    done = scan(browser, sticker_png(first, tmp_path), "sticker.png")
    assert done.status_code == 200, done.text
    assert "This charger is yours" in done.text
    assert epoch_pin(first.secret, first.serial, 0).digits in done.text

    # A phone's photo of it: JPEG, the sticker turned and small in a larger picture.
    done = scan(browser, photographed(sticker_png(second, tmp_path)))
    assert done.status_code == 200, done.text
    assert epoch_pin(second.secret, second.serial, 0).digits in done.text
    mine = browser.get("/app/chargers").text
    assert first.serial in mine and second.serial in mine

    # The same sticker again: the typed code's answer, with the code read kept in the field.
    again = scan(browser, sticker_png(first, tmp_path), "sticker.png")
    assert again.status_code == 409 and "already has an owner; ask them to invite you" in again.text
    assert f'value="{first.sticker.encode()}"' in again.text
    # Nothing of the photo or the code read is logged.
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert first.sticker.claim_code not in logged and second.sticker.claim_code not in logged


def test_a_sticker_beside_another_qr_code_is_read_and_two_stickers_are_refused(
    sqlite_client: TestClient, tmp_path: Path
) -> None:
    client = sqlite_client
    first, second = provision(client, count=2)
    browser = owner(client)
    beside_a_link = photographed(sticker_png(first, tmp_path), qr_png("https://example.com/help"))
    assert scan(browser, beside_a_link).status_code == 200

    two = scan(browser, photographed(sticker_png(second, tmp_path), sticker_png(first, tmp_path)))
    assert two.status_code == 422 and "the photo shows 2 chargepin stickers" in two.text
    assert second.serial not in browser.get("/app/chargers").text


@pytest.mark.parametrize(
    ("photo", "name", "said"),
    [
        (b"", "", "no photo was sent"),
        (b"not an image at all", "sticker.jpg", "not a photo this page can read"),
        (b"GIF89a" + b"\x00" * 64, "sticker.gif", "not a photo this page can read"),
        (qr_png("https://example.com/"), "qr.png", "not a chargepin sticker"),
        (qr_png("CHARGEPIN:2:CP1:ABC"), "qr.png", "not a chargepin sticker"),
        (huge_png(8_000, 8_000), "big.png", "8000 x 8000 pixels: more than the 50 megapixels"),
        (huge_png(20_000, 20_000), "bomb.png", f"more than the {MAX_PIXELS // 1_000_000} mega"),
    ],
    ids=["empty", "text", "gif", "link", "unknown-format", "64-megapixels", "400-megapixels"],
)
def test_a_photo_that_is_not_a_sticker_is_explained_on_the_page(
    sqlite_client: TestClient, photo: bytes, name: str, said: str
) -> None:
    client = sqlite_client
    browser = owner(client)
    answer = scan(browser, photo, name)
    assert answer.status_code == 422, answer.text
    assert said in answer.text and "or type the code printed under the QR code" in answer.text
    assert 'id="photo"' in answer.text and 'id="code"' in answer.text  # both ways again
    assert "No charger yet" in browser.get("/app/chargers").text


def test_no_qr_code_and_a_cut_photo_are_explained(
    sqlite_client: TestClient, tmp_path: Path
) -> None:
    client = sqlite_client
    (made,) = provision(client)
    browser = owner(client)
    blank = photographed()
    answer = scan(browser, blank)
    assert answer.status_code == 422 and "no QR code was found in the photo" in answer.text
    cut = photographed(sticker_png(made, tmp_path))[:5000]
    answer = scan(browser, cut)
    assert answer.status_code == 422, answer.text


def test_the_photo_s_size_is_bounded_on_this_route_only(sqlite_client: TestClient) -> None:
    client = sqlite_client
    browser = owner(client)
    # A photo over the 10 MB kept, as a browser sends it (its whole length declared): the page.
    over = scan(browser, b"\xff" * (PHOTO_MAX_BYTES + 2 * 1024 * 1024))
    assert over.status_code == 413 and "the photo is over 10 MB" in over.text
    assert 'id="photo"' in over.text  # the page, to try again
    # A declared body past the route's allowance is refused before it is read.
    token = csrf_of(browser.get("/app/commission"))
    declared = browser.post(
        SCAN,
        content=b"x" * 16,
        headers={
            **origin_of(browser),
            "Content-Type": "multipart/form-data; boundary=b",
            "Content-Length": str(PHOTO_BODY_BYTES + 1),
        },
    )
    assert declared.status_code == 413
    # Every other route keeps the service's 64 KiB, the typed code's form included.
    typed = browser.post(
        "/app/commission",
        data={"csrf": token, "code": "x" * 70_000},
        headers=origin_of(browser),
    )
    assert typed.status_code == 413


def test_a_photo_needs_a_session_and_the_page_s_token(
    sqlite_client: TestClient, tmp_path: Path
) -> None:
    client = sqlite_client
    (made,) = provision(client)
    photo = sticker_png(made, tmp_path)
    stranger = browser_for(client)
    answer = stranger.post(
        SCAN, files={"photo": ("s.png", photo, "image/png")}, follow_redirects=False
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/app/signin"

    browser = owner(client)
    token = csrf_of(browser.get("/app/commission"))
    files = {"photo": ("s.png", photo, "image/png")}
    no_token = browser.post(SCAN, files=files, headers=origin_of(browser))
    assert no_token.status_code == 403 and "reload the page" in no_token.text
    foreign = browser.post(
        SCAN, data={"csrf": token}, files=files, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    not_multipart = browser.post(SCAN, data={"csrf": token}, headers=origin_of(browser))
    assert not_multipart.status_code == 403
    garbled = browser.post(
        SCAN,
        content=b"--b\r\nContent-Disposition: form-data\r\n\r\n" + b"x" * 2000,
        headers={**origin_of(browser), "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert garbled.status_code == 422 and "form as it is" in garbled.text
    many = browser.post(
        SCAN,
        data={"csrf": token, **{f"f{n}": "x" for n in range(9)}},
        files={"photo": ("s.png", photo, "image/png")},
        headers=origin_of(browser),
    )
    assert many.status_code == 422 and "form as it is" in many.text
    assert "No charger yet" in browser.get("/app/chargers").text
    # And with the token, the same photo is claimed.
    assert scan(browser, photo, "s.png").status_code == 200
