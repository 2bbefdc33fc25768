"""A photo of a charger's sticker, read on the server: the text of its QR code.

Commissioning (PRODUCT.md) scans the sticker's QR code. A phone's browser offers its camera for
a file input (`capture`), so the web app's "Add a charger" takes a photo and this module reads
the QR code in it with zxing-cpp; the text then goes exactly where a typed code goes
(`claims.commission`). The photo is only held in memory for the request: never written,
logged or kept.

Guarded: a photo is at most `PHOTO_MAX_BYTES` (the route reads no more), only JPEG, PNG and WebP
are opened, at most `MAX_PIXELS` pixels (checked from the header, before anything is decoded:
a small file can declare a huge image), and it is decoded at most `DECODE_SIDE` pixels wide
and high (JPEG's draft mode scales while decoding). Every refusal says what was wrong and what
to do, as a 422 (413 for the size).
"""

from __future__ import annotations

import io
import warnings

import zxingcpp
from PIL import Image, UnidentifiedImageError

from chargepin.core.errors import InvalidSticker
from chargepin.core.provisioning import StickerPayload
from chargepin.fleet.errors import FleetError, Unprocessable

PHOTO_MAX_BYTES = 10 * 1024 * 1024
"""The largest photo read: a phone's 12-megapixel JPEG is 2 to 5 MB."""
MAX_PIXELS = 50_000_000
"""The most pixels a photo may declare (a 48-megapixel camera's full resolution fits)."""
DECODE_SIDE = 2048
"""Width and height the photo is scaled into before the QR code is looked for: a sticker that
fills a fair part of the frame keeps several pixels per module."""
DRAFT_SIDE = DECODE_SIDE // 2
"""The least width and height JPEG's draft decoding keeps: a 12-megapixel photo (4032 x 3024) is
decoded at 2016 x 1512, a quarter of the pixels, instead of in full and then scaled."""
SENT_SIDE = 1024
"""Width and height the page's script (static/photo.js) scales a photo into before sending it:
a 12-megapixel photo goes as 1024 x 768, about 130 KB instead of 2 to 5 MB, and is read in a
few milliseconds instead of about 70 (docs/PERFORMANCE.md, "Web app pages"); a sticker a fifth
of the frame wide still has about 6 pixels per module of its QR code (version 2: 25 modules and
a quiet zone of 4 each side). A browser without the script sends the photo as taken, and it is
read all the same, only slower."""
FORMATS = ("JPEG", "PNG", "WEBP")
QR_CODES = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)

TYPE_IT = "or type the code printed under the QR code"


class PhotoTooLarge(FleetError):
    status = 413
    code = "photo_too_large"


def too_large() -> PhotoTooLarge:
    return PhotoTooLarge(
        f"the photo is over {PHOTO_MAX_BYTES // (1024 * 1024)} MB, the most this page reads; "
        f"take it at a lower resolution, {TYPE_IT}"
    )


def too_many_pixels(size: str) -> Unprocessable:
    return Unprocessable(
        f"the photo is {size}: more than the {MAX_PIXELS // 1_000_000} megapixels this page "
        f"reads; take it at a lower resolution, {TYPE_IT}",
        code="photo_too_large",
    )


def sticker_text(photo: bytes) -> str:
    """The text of the one chargepin sticker's QR code in `photo`, else a refusal saying why."""
    if not photo:
        raise Unprocessable(f"no photo was sent; take a photo of the sticker, {TYPE_IT}")
    if len(photo) > PHOTO_MAX_BYTES:
        raise too_large()
    image = _opened(photo)
    texts = _qr_texts(image)
    if not texts:
        raise Unprocessable(
            "no QR code was found in the photo; take it again with the sticker's QR code filling "
            f"most of the picture, sharp and well lit, {TYPE_IT}",
            code="no_qr_code",
        )
    stickers = [text for text in texts if _is_sticker(text)]
    if len(stickers) == 1:
        return stickers[0]  # other QR codes beside the sticker (a vendor's link) do not matter
    if len(stickers) > 1:
        raise Unprocessable(
            f"the photo shows {len(stickers)} chargepin stickers; take a photo of the one "
            f"charger's sticker only, {TYPE_IT}",
            code="several_stickers",
        )
    raise Unprocessable(
        "the QR code in the photo is not a chargepin sticker (it does not read "
        f"CHARGEPIN:1:<serial>:<code>); take a photo of the sticker on the charger, {TYPE_IT}",
        code="not_a_sticker",
    )


def _opened(photo: bytes) -> Image.Image:
    """The photo as an 8-bit grey image at most DECODE_SIDE square, its size checked first."""
    unreadable = Unprocessable(
        "this file is not a photo this page can read (JPEG, PNG or WebP); take a photo of the "
        f"sticker, {TYPE_IT}",
        code="not_an_image",
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(photo), formats=FORMATS)
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise too_many_pixels(f"{width} x {height} pixels")
            # JPEG: scaled while decoding, by the largest power of two that keeps both sides at
            # least DRAFT_SIDE (asking for DECODE_SIDE itself never scales a 4:3 photo under
            # 4096 x 4096: its short side halved is under 2048); the thumbnail does the rest.
            image.draft("L", (DRAFT_SIDE, DRAFT_SIDE))
            grey = image.convert("L")
            grey.thumbnail((DECODE_SIDE, DECODE_SIDE))
            return grey
    except FleetError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise too_many_pixels("far larger") from None  # Pillow's own limit, on opening
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        SyntaxError,  # Pillow's PNG reader raises it for some broken chunks
    ):
        raise unreadable from None


def _qr_texts(image: Image.Image) -> list[str]:
    """The distinct texts of the QR codes zxing-cpp reads in `image`, in the order found."""
    found = zxingcpp.read_barcodes(image, formats=QR_CODES)
    texts: list[str] = []
    for barcode in found:
        if barcode.valid and barcode.text not in texts:
            texts.append(barcode.text)
    return texts


def _is_sticker(text: str) -> bool:
    """Whether `text` reads as a chargepin sticker (core's rule: StickerPayload.parse)."""
    try:
        StickerPayload.parse(text)
    except InvalidSticker:
        return False
    return True
