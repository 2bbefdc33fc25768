"""PINs the tests type on purpose."""

from __future__ import annotations

from chargepin.core.pin import Pin


def wrong_pin(right: Pin) -> str:
    """A strong PIN that is not `right`."""
    return "918273" if str(right) != "918273" else "827364"
