"""The CALLERROR for an action nobody handles: OCPP-J 2.0.1's table, not the `ocpp` package's."""

from __future__ import annotations

from chargepin.core.call_errors import MAX_ACTION_ECHO, unhandled_action

KNOWN = frozenset({"BootNotification", "Reset", "DataTransfer"})


def test_an_action_of_the_standard_without_a_handler_is_not_supported() -> None:
    answer = unhandled_action("Reset", KNOWN)
    assert answer.code == "NotSupported"
    assert answer.description == "Requested Action is recognized but not supported by the receiver"


def test_an_action_nobody_defined_is_not_implemented() -> None:
    answer = unhandled_action("OpenTheGarageDoor", KNOWN)
    assert answer.code == "NotImplemented"
    assert answer.description == "Requested Action is not known by receiver"


def test_the_peer_s_action_name_is_echoed_bounded() -> None:
    answer = unhandled_action("x" * 60_000, KNOWN)
    assert len(answer.details["cause"]) < MAX_ACTION_ECHO + 30
