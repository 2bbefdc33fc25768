"""`chargepin lab screenshots` (`make screenshots`): every screen of the web app at a phone's
width, as PNGs in docs/app/ and a gallery in README.md, from the one list of screens the
accessibility test checks (`lab/app_screens.py`).

Debian's Chromium, headless, driven by Playwright, against the fleet app behind uvicorn on
127.0.0.1 with the scene's data (fixed names, serials and clock; the PINs and codes are random
as in the product, so those pixels change from run to run). Each shot is the whole page at
360 px and scale 1, reduced to a 64-colour palette with Pillow: the pages are flat colours and
text, and the set stays far below 1 MB.
"""

from __future__ import annotations

import html
import io
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chargepin.core.errors import ChargepinError
from chargepin.lab.app_screens import PHONE, SCREENS, Screen, opened, staged

COLOURS = 64
"""The palette of a shot: enough for anti-aliased text on the pages' few flat colours."""
GALLERY_START = "<!-- screens: made by `make screenshots`, do not edit by hand -->"
GALLERY_END = "<!-- /screens -->"
THUMBNAIL_WIDTH = 180
"""How wide the README shows each 360 px shot (two or three a row on GitHub)."""


class ScreenshotsFailed(ChargepinError):
    """The screenshots could not be made (no browser, no README gallery to fill)."""


@dataclass(frozen=True)
class Shot:
    """One screen's PNG as written."""

    name: str
    path: Path
    size: int
    width: int
    height: int


def chromium() -> str:
    """Debian's Chromium on the PATH (`make screenshots` installs it with .ci/chromium.sh)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise ScreenshotsFailed(
        "no Chromium found: install Debian's chromium package (bash .ci/chromium.sh as root) "
        "or pass --chromium PATH"
    )


def small_png(png: bytes) -> tuple[bytes, int, int]:
    """`png` on a palette of COLOURS colours, compressed as hard as zlib goes."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        reduced = image.convert("RGB").quantize(COLOURS, dither=Image.Dither.NONE)
        out = io.BytesIO()
        reduced.save(out, "PNG", optimize=True)
        return out.getvalue(), image.width, image.height


SHOTS = tuple(screen for screen in SCREENS if screen.shot)
"""The screens photographed (the others are states of these, checked by the tests only)."""


def take(out: Path, browser_path: str, screens: Sequence[Screen] = SHOTS) -> list[Shot]:
    """Each of `screens` at 360 px into `out` (`<name>.png`, overwritten); nothing else there
    is touched (see `strays`)."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    shots: list[Shot] = []
    with (
        tempfile.TemporaryDirectory(prefix="chargepin-screens-") as directory,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=browser_path, headless=True)
        try:
            with staged(Path(directory)) as stage:
                for screen in screens:
                    with opened(browser, stage, screen, PHONE) as page:
                        png = page.screenshot(full_page=True, animations="disabled", caret="hide")
                    data, width, height = small_png(png)
                    path = out / f"{screen.name}.png"
                    path.write_bytes(data)
                    shots.append(Shot(screen.name, path, len(data), width, height))
        finally:
            browser.close()
    return shots


def strays(out: Path) -> list[Path]:
    """PNGs in `out` that no screen makes: a screen renamed or gone, to be deleted by hand
    (never deleted here: `--out` may be any folder, with pictures of its own)."""
    made = {f"{screen.name}.png" for screen in SHOTS}
    return sorted(path for path in out.glob("*.png") if path.name not in made)


def gallery(folder: str) -> str:
    """The README's gallery: every screen's shot, small, with its caption as alt text."""
    images = [
        f'<img src="{folder}/{screen.name}.png" width="{THUMBNAIL_WIDTH}" '
        f'alt="{html.escape(screen.caption)}" title="{html.escape(screen.caption)}">'
        for screen in SHOTS
    ]
    return "\n".join([GALLERY_START, "<p>", *images, "</p>", GALLERY_END])


def write_gallery(readme: Path, folder: str) -> None:
    """Replace the gallery between its two markers in `readme`."""
    text = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(GALLERY_START) + ".*?" + re.escape(GALLERY_END), re.DOTALL)
    if not pattern.search(text):
        raise ScreenshotsFailed(f"{readme} has no gallery to fill: put {GALLERY_START!r} in it")
    readme.write_text(pattern.sub(lambda _match: gallery(folder), text), encoding="utf-8")


def run(out: Path, readme: Path | None, browser_path: str | None) -> int:
    """Take every shot, fill the README's gallery, print what was written; 0 when done."""
    from rich.console import Console
    from rich.table import Table

    browser_path = browser_path or chromium()
    if shutil.which(browser_path) is None:
        raise ScreenshotsFailed(f"{browser_path} is not a browser that can be run: pass --chromium")
    if out.exists() and not out.is_dir():
        raise ScreenshotsFailed(f"{out} is a file: --out takes a folder")
    if readme is not None and not readme.is_file():
        raise ScreenshotsFailed(f"{readme} does not exist: pass --readme FILE or --no-readme")
    shots = take(out, browser_path)
    if readme is not None:
        write_gallery(readme, Path(os.path.relpath(out, readme.parent)).as_posix())
    table = Table(title=f"{len(shots)} screens at {PHONE['width']} px", title_style="bold")
    table.add_column("file")
    table.add_column("pixels", justify="right")
    table.add_column("bytes", justify="right")
    for shot in shots:
        table.add_row(str(shot.path), f"{shot.width} x {shot.height}", f"{shot.size:,}")
    table.add_section()
    table.add_row("total", "", f"{sum(shot.size for shot in shots):,}", style="bold")
    console = Console(highlight=False)
    console.print(table)
    if readme is not None:
        console.print(f"gallery written in {readme}")
    for path in strays(out):
        console.print(f"[yellow]not a screen any more:[/yellow] {path} (delete it if it was one)")
    return 0
