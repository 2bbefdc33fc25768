"""`make screenshots`: one small PNG per screen of the web app in docs/app/, shown in README.md,
made from the list of screens the accessibility test checks (lab/app_screens.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from chargepin.lab.app_screens import PHONE
from chargepin.lab.screenshots import (
    GALLERY_START,
    SHOTS,
    ScreenshotsFailed,
    gallery,
    run,
    strays,
    take,
    write_gallery,
)
from tests.helpers.browser import chromium_path

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "docs" / "app"
BUDGET = 400_000
"""Bytes all the PNGs may weigh together (the brief: well under 1 MB)."""


def test_docs_app_holds_one_small_png_per_screen_and_the_readme_shows_them() -> None:
    names = sorted(path.name for path in FOLDER.glob("*.png"))
    assert names == sorted(f"{screen.name}.png" for screen in SHOTS), (
        "run `make screenshots` after changing the list of screens"
    )
    for path in FOLDER.glob("*.png"):
        with Image.open(path) as image:
            assert image.width == PHONE["width"], path
    assert sum(path.stat().st_size for path in FOLDER.glob("*.png")) < BUDGET
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert gallery("docs/app") in readme, "run `make screenshots`: the gallery is not current"
    # The two first commands stay first, the gallery right after them.
    assert readme.index("make demo") < readme.index("make test") < readme.index(GALLERY_START)
    assert readme.index(GALLERY_START) < readme.index("##")


def test_a_readme_without_the_gallery_markers_is_refused(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# no gallery here\n", encoding="utf-8")
    with pytest.raises(ScreenshotsFailed, match="no gallery to fill"):
        write_gallery(readme, "docs/app")
    assert readme.read_text(encoding="utf-8") == "# no gallery here\n"


@pytest.mark.slow
def test_the_shots_are_360_px_palette_pngs_and_nothing_else_is_touched(tmp_path: Path) -> None:
    theirs = tmp_path / "holiday.png"
    theirs.write_bytes(b"someone's picture")
    shots = take(tmp_path, chromium_path(), SHOTS[:2])

    assert [shot.path for shot in shots] == [tmp_path / f"{s.name}.png" for s in SHOTS[:2]]
    assert theirs.read_bytes() == b"someone's picture"
    assert strays(tmp_path) == [theirs]
    for shot in shots:
        with Image.open(shot.path) as image:
            assert image.format == "PNG" and image.mode == "P"
            assert (image.width, image.height) == (shot.width, shot.height)
            assert image.width == PHONE["width"] and image.height >= PHONE["height"]
        assert shot.size == shot.path.stat().st_size < BUDGET / len(SHOTS)


def test_careless_arguments_are_refused_before_any_browser_starts(tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    with pytest.raises(ScreenshotsFailed, match="is not a browser"):
        run(tmp_path, None, str(tmp_path / "no-such-chromium"))
    with pytest.raises(ScreenshotsFailed, match="--out takes a folder"):
        run(a_file, None, chromium_path())
    with pytest.raises(ScreenshotsFailed, match="pass --readme FILE or --no-readme"):
        run(tmp_path, tmp_path / "README.md", chromium_path())
    assert a_file.read_text() == "mine" and list(tmp_path.iterdir()) == [a_file]
