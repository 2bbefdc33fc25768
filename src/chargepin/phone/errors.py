"""What can go wrong between a phone and a charger, as types the app can act on."""

from __future__ import annotations

from chargepin.core.errors import ChargepinError, format_duration
from chargepin.core.protocol import OpenInfo


class PhoneError(ChargepinError):
    """Root of the phone client's errors; `exit_code` is what `chargepin phone` exits with."""

    exit_code = 1


class WrongPin(PhoneError):
    """The charger refused the PIN; `epoch` is the charger's PIN epoch after the failure."""

    exit_code = 3

    def __init__(self, epoch: int, locked_for: float = 0.0, info: OpenInfo | None = None) -> None:
        hint = (
            f"the charger is now locked for {format_duration(locked_for)}"
            if locked_for > 0
            else "check the PIN under Charger Info (troubleshooting) and try again"
        )
        super().__init__(f"wrong PIN (charger PIN epoch is now {epoch}); {hint}")
        self.epoch = epoch
        self.locked_for = locked_for
        self.info = info
        """The open info read after the failure: the attested state to relay to the fleet."""


class ChargerLocked(PhoneError):
    """Too many wrong PINs: the charger refuses new pairings for `retry_after` seconds."""

    exit_code = 4

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            f"charger locked after too many wrong PINs; try again in {format_duration(retry_after)}"
        )
        self.retry_after = retry_after


class ChargerBusy(PhoneError):
    """Another phone is pairing right now."""

    exit_code = 5

    def __init__(self) -> None:
        super().__init__("another phone is pairing with this charger; try again in a moment")


class PairingRefused(PhoneError):
    """The charger refused to pair (and said why)."""

    exit_code = 6


class ChargerNotFound(PhoneError):
    """No charger with that address or serial is advertising in range."""

    exit_code = 7


class ChargerTimeout(PhoneError):
    """The charger stopped answering."""

    exit_code = 8


class PinNeeded(PhoneError):
    """The charger needs a PIN and none was given."""

    exit_code = 9

    def __init__(self, serial: str) -> None:
        super().__init__(
            f"charger {serial} needs its 6-digit PIN: it is on Charger Info in the app "
            "(or pass --pin)"
        )


class AccessDenied(PhoneError):
    """The charger refused a protected operation (not paired, or paired without the PIN)."""

    exit_code = 10


class AdminRefused(PhoneError):
    """The charger refused an owner ticket; `reason` is the charger's stable code."""

    exit_code = 11

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"charger refused the request ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


class CommandRefused(PhoneError):
    """The charger refused a control command (bad value, or not possible now)."""

    exit_code = 12


class LinkLost(PhoneError):
    """The charger dropped the connection in the middle of a request."""

    exit_code = 13

    def __init__(
        self,
        message: str = "the charger dropped the connection in the middle of a request; "
        "connect again",
    ) -> None:
        super().__init__(message)


class NotThisCharger(PhoneError):
    """The device advertising as charger `serial` did not prove it is that charger: the app
    never typed the PIN into it (issue 9 point 8, core.presence)."""

    exit_code = 16

    def __init__(self, serial: str, why: str) -> None:
        super().__init__(
            f"this device is not charger {serial}; the PIN was not sent to it ({why}). "
            "Move closer to the charger and try again; if this repeats, tell the owner: "
            "something nearby imitates the charger"
        )
        self.serial = serial
        self.why = why
