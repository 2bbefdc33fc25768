"""The one form with a file: the photo of a sticker (multipart/form-data), read in memory.

Parsed as it streams in with python-multipart's parser (Starlette's `request.form()` would
spool a file over 1 MB to a temporary file on disk: the photo is never stored). Bounded: the
photo at `PHOTO_MAX_BYTES` (past it the rest is read and dropped, so the browser gets the
page saying so rather than a reset connection), a text field at `MAX_TEXT_BYTES`, at most
`MAX_PARTS` parts; fleet/body_limit.py lets this route's body reach `PHOTO_BODY_BYTES`, and
every other route keeps its 64 KiB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from chargepin.fleet.sticker_photo import PHOTO_MAX_BYTES

PHOTO_FIELD = "photo"
MAX_TEXT_BYTES = 1024
MAX_PARTS = 8
PHOTO_BODY_BYTES = 4 * PHOTO_MAX_BYTES
"""What the body limit lets the photo's route receive. More than the photo it keeps: a browser
declares the whole body's length, and a photo a little over 10 MB must get the page that says
so, not the service's JSON 413; past PHOTO_MAX_BYTES the route reads and drops the rest (its
memory stays bounded by PHOTO_MAX_BYTES), past this the body limit refuses before reading."""


@dataclass
class PhotoForm:
    """What a photo form carried: its text fields (the first of each name) and the photo."""

    fields: dict[str, str] = field(default_factory=dict)
    photo: bytes = field(default=b"", repr=False)
    too_large: bool = False
    malformed: bool = False


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str = ""
    is_file: bool = False
    data: bytearray = field(default_factory=bytearray)
    dropped: bool = False


async def read_photo_form(request: Request) -> PhotoForm | None:
    """The posted multipart form, or None when the body is not one (no CSRF token then)."""
    content_type, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        return None
    form = PhotoForm()
    parts: list[_Part] = []
    header_field = bytearray()
    header_value = bytearray()

    def part_begin() -> None:
        parts.append(_Part())
        if len(parts) > MAX_PARTS:
            form.malformed = True

    def header_field_data(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def header_value_data(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def header_end() -> None:
        if len(header_field) + len(header_value) > MAX_TEXT_BYTES:
            form.malformed = True
        else:
            parts[-1].headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def headers_finished() -> None:
        part = parts[-1]
        _disposition, params = parse_options_header(part.headers.get(b"content-disposition"))
        part.name = params.get(b"name", b"").decode("utf-8", "replace")
        part.is_file = b"filename" in params
        first_photo = (
            part.is_file
            and part.name == PHOTO_FIELD
            and not any(p.is_file and p.name == PHOTO_FIELD for p in parts[:-1])
        )
        part.dropped = part.is_file and not first_photo  # only the first photo is read

    def part_data(data: bytes, start: int, end: int) -> None:
        part = parts[-1]
        if part.dropped or form.malformed:
            return
        part.data.extend(data[start:end])
        if part.is_file and len(part.data) > PHOTO_MAX_BYTES:
            form.too_large = True
            part.dropped = True
            part.data.clear()
        elif not part.is_file and len(part.data) > MAX_TEXT_BYTES:
            form.malformed = True

    def part_end() -> None:
        part = parts[-1]
        if part.dropped or form.malformed:
            return
        if part.is_file:
            form.photo = bytes(part.data)
        else:
            try:
                form.fields.setdefault(part.name, part.data.decode("utf-8"))
            except UnicodeDecodeError:
                form.malformed = True
        part.data = bytearray()

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": part_begin,
            "on_header_field": header_field_data,
            "on_header_value": header_value_data,
            "on_header_end": header_end,
            "on_headers_finished": headers_finished,
            "on_part_data": part_data,
            "on_part_end": part_end,
        },
    )
    try:
        async for chunk in request.stream():
            if not form.malformed:
                parser.write(chunk)
        if not form.malformed:
            parser.finalize()
    except FormParserError:
        form.malformed = True
    if form.malformed:
        form.photo = b""
    return form
