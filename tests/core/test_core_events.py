"""Event kinds (chargepin.core.events): stored in state files, so their values never change."""

from __future__ import annotations

from chargepin.core.events import EventKind


def test_the_stored_values_are_the_ones_state_files_hold() -> None:
    assert [kind.value for kind in EventKind] == [
        "pairing_failed",
        "pairing_ok",
        "locked",
        "ticket_rejected",
        "pin_enabled",
        "pin_changed",
        "pin_disabled",
        "bond_removed",
        "pairing_refused",
        "pairing_admitted",
        "link_dropped",
        "pin_rekeyed",
    ]


def test_a_kind_is_its_string_for_callers_that_still_pass_text() -> None:
    assert EventKind.PAIRING_FAILED == "pairing_failed"
    assert {"locked": 1}[EventKind.LOCKED] == 1
