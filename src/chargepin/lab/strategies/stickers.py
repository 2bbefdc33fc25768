"""Scanned QR texts: real stickers as scanners return them, altered ones, and any text."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from chargepin.core.errors import InvalidSticker
from chargepin.core.limits import SERIAL_RE
from chargepin.core.provisioning import CLAIM_ALPHABET, CLAIM_CODE_LENGTH, StickerPayload
from chargepin.lab.strategies.mutations import text_mutations
from chargepin.lab.strategies.oracle import outcome

CLAIM_CODES = st.text(CLAIM_ALPHABET, min_size=CLAIM_CODE_LENGTH, max_size=CLAIM_CODE_LENGTH)
STICKERS = st.builds(StickerPayload, st.from_regex(SERIAL_RE, fullmatch=True), CLAIM_CODES)
_SPACE = st.text(" \t\r\n", max_size=3)


@dataclass(frozen=True)
class StickerCase:
    """A scanned QR text and, when it is a real sticker's, the payload it carries."""

    text: str
    payload: StickerPayload | None = None


@st.composite
def _scanned(draw: st.DrawFn, payload: StickerPayload) -> StickerCase:
    """A sticker as scanners return it: any case of prefix and claim code, white space around."""
    prefix = "".join(
        char.lower() if draw(st.booleans()) else char for char in payload.encode().split(":")[0]
    )
    code = payload.claim_code.lower() if draw(st.booleans()) else payload.claim_code
    text = f"{prefix}:1:{payload.serial}:{code}"
    return StickerCase(draw(_SPACE) + text + draw(_SPACE), payload)


@st.composite
def _sticker_fields(draw: st.DrawFn) -> StickerCase:
    """Four fields, each right or wrong: another version, a serial or code out of its alphabet."""
    right = draw(STICKERS)
    fields = [
        st.sampled_from(["CHARGEPIN", "chargepin", "CHARGEPIN2", "CHARGEPİN", ""]),
        st.one_of(st.sampled_from(["1", "0", "2", "01", "1.0", " 1", "١"]), st.text(max_size=3)),
        st.one_of(st.just(right.serial), st.text(max_size=34)),
        st.one_of(st.just(right.claim_code), st.text(max_size=13), st.just("O" * 12)),
    ]
    return StickerCase(":".join(draw(field) for field in fields))


STICKER_CASES = st.one_of(
    STICKERS.flatmap(_scanned),
    _sticker_fields(),
    STICKERS.flatmap(lambda payload: text_mutations(payload.encode())).map(StickerCase),
    st.lists(st.text(max_size=16), max_size=6)
    .map(lambda parts: "CHARGEPIN:" + ":".join(parts))
    .map(StickerCase),
    st.text(max_size=80).map(StickerCase),
)


def check_sticker(case: StickerCase) -> None:
    """StickerPayload.parse reads a sticker or says what is wrong; it accepts nothing but the
    documented format (prefix and claim code in any case, white space around)."""
    parsed = outcome(lambda: StickerPayload.parse(case.text), InvalidSticker)
    if case.payload is not None:
        assert parsed == case.payload, f"{case.payload!r} read as {parsed!r}"
    if isinstance(parsed, StickerPayload):
        read = f"{case.text!r} read as {parsed!r}"
        assert case.text.isascii(), read  # look-alikes must not pass for the QR alphabet
        prefix, version, serial, code = case.text.strip().split(":")
        assert prefix.upper() == "CHARGEPIN" and version == "1", read
        assert parsed.serial == serial and SERIAL_RE.fullmatch(serial), read
        assert parsed.claim_code == code.upper(), read
        assert len(parsed.claim_code) == CLAIM_CODE_LENGTH, read
        assert all(char in CLAIM_ALPHABET for char in parsed.claim_code), read
        assert StickerPayload.parse(parsed.encode()) == parsed
