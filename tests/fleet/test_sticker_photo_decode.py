"""A phone's 12-megapixel photo is decoded at half its size by JPEG's draft mode, not in full
and then scaled (fleet/sticker_photo.py; docs/PERFORMANCE.md, "Web app pages"), and its
sticker is still read."""

from __future__ import annotations

import io

import segno
from PIL import Image

from chargepin.core.provisioning import StickerPayload, new_claim_code
from chargepin.fleet import sticker_photo

STICKER = StickerPayload("CP00000001", new_claim_code()).encode()


def phone_photo(size: tuple[int, int]) -> bytes:
    printed = io.BytesIO()
    segno.make(STICKER, error="m").save(printed, kind="png", scale=8, border=4)
    side = size[1] // 2
    code = Image.open(printed).convert("L").resize((side, side), Image.Resampling.NEAREST)
    photo = Image.new("L", size, 140)
    photo.paste(code, ((size[0] - side) // 2, (size[1] - side) // 2))
    taken = io.BytesIO()
    photo.convert("RGB").save(taken, "JPEG", quality=85)
    return taken.getvalue()


def test_a_12_megapixel_photo_is_decoded_at_half_size_and_read() -> None:
    photo = phone_photo((4032, 3024))

    decoded = sticker_photo._opened(photo)

    # Decoded in full and scaled, it would be 2048 x 1536: the draft scaled it while decoding.
    assert decoded.size == (2016, 1512) and decoded.mode == "L"
    assert sticker_photo.sticker_text(photo) == STICKER


def test_a_photo_within_the_decoding_size_is_kept_as_it_is() -> None:
    decoded = sticker_photo._opened(phone_photo((1600, 1200)))
    assert decoded.size == (1600, 1200)
