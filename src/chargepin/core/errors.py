"""The one exception hierarchy of chargepin: every error says its cause and the next step."""

from __future__ import annotations


def format_duration(seconds: float) -> str:
    """Human text for a wait ("4 min 12 s"), rounded up so a user never retries too early."""
    total = max(0, int(-(-seconds // 1)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


class ChargepinError(Exception):
    """Root of all chargepin errors; the message names the cause and what to do next.

    `exit_code` is what a `chargepin` command exits with on this error: 2, as for bad usage
    (Click's code), unless a subclass says otherwise (the phone's errors each have their own).
    """

    exit_code: int = 2


class InvalidPin(ChargepinError, ValueError):
    """A PIN that is not exactly six ASCII digits."""


class WeakPin(ChargepinError, ValueError):
    """A well-formed PIN refused by the weak-PIN rules; `reason` says which rule."""

    def __init__(self, pin: str, reason: str) -> None:
        # The digits stay out of the message: errors end up in logs, PINs must not.
        super().__init__(f"that PIN is too easy to guess: {reason}; choose another PIN")
        self.reason = reason


class InvalidVersion(ChargepinError, ValueError):
    """A firmware version that is not dot-separated decimal numbers."""


class InvalidConfig(ChargepinError, ValueError):
    """A configuration value outside what the rules allow."""


class ProvisioningRefused(ChargepinError):
    """The factory must not provision a charger as asked (e.g. its firmware has no PIN)."""


class InvalidSticker(ChargepinError, ValueError):
    """A scanned sticker payload that is not a chargepin sticker; the message says why."""


class TicketRejected(ChargepinError):
    """An authorisation ticket the charger will not act on; `reason` is a stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"ticket rejected ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


class ReceiptInvalid(ChargepinError):
    """A receipt whose MAC or contents do not verify."""
