"""Changes to valid encodings: bit flips, cuts, extensions and spliced-in runs of bytes or text."""

from __future__ import annotations

from hypothesis import assume
from hypothesis import strategies as st


@st.composite
def _one_change(draw: st.DrawFn, blob: bytes) -> bytes:
    kinds = ["flip", "cut", "extend", "splice"] if blob else ["extend"]
    kind = draw(st.sampled_from(kinds))
    if kind == "flip":
        at = draw(st.integers(0, len(blob) - 1))
        mask = draw(st.integers(1, 255))
        return blob[:at] + bytes([blob[at] ^ mask]) + blob[at + 1 :]
    if kind == "cut":
        return blob[: draw(st.integers(0, len(blob) - 1))]
    if kind == "extend":
        return blob + draw(st.binary(min_size=1, max_size=64))
    start = draw(st.integers(0, len(blob) - 1))
    end = draw(st.integers(start, len(blob)))
    return blob[:start] + draw(st.binary(max_size=32)) + blob[end:]


@st.composite
def mutations(draw: st.DrawFn, blob: bytes) -> bytes:
    """`blob` with one to four changes (bit flips, cuts, extensions, spliced-in runs); never
    `blob` itself."""
    changed = blob
    for _ in range(draw(st.integers(1, 4), label="changes")):
        changed = draw(_one_change(changed))
    assume(changed != blob)
    return changed


@st.composite
def text_mutations(draw: st.DrawFn, text: str) -> str:
    """`text` with one to three characters replaced, removed or inserted, or cut short."""
    changed = text
    for _ in range(draw(st.integers(1, 3), label="changes")):
        kind = draw(st.sampled_from(["replace", "delete", "insert", "cut"]))
        at = draw(st.integers(0, len(changed)))
        char = draw(st.one_of(st.sampled_from(":0123456789ABCZabcz-_ \t\n"), st.characters()))
        if kind == "replace":
            changed = changed[:at] + char + changed[at + 1 :]
        elif kind == "delete":
            changed = changed[:at] + changed[at + 1 :]
        elif kind == "insert":
            changed = changed[:at] + char + changed[at:]
        else:
            changed = changed[:at]
    assume(changed != text)
    return changed
