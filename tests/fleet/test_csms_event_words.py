"""What an OCPP security event means, in the owner's words (fleet/csms/events.py meaning)."""

from __future__ import annotations

import datetime as dt

import pytest

from chargepin.fleet.csms.events import meaning

AT = dt.datetime(2026, 12, 5, 14, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("event_type", "tech_info", "words"),
    [
        (
            "MaintenanceLoginFailed",
            '{"phone":"aa:bb:cc:dd:ee:ff","epoch":3}',
            "wrong PIN from AA:BB:CC:DD:EE:FF (PIN epoch 3)",
        ),
        # A storm of identical failures the charger sent as one event (techInfo count).
        (
            "MaintenanceLoginFailed",
            '{"phone":"AA:BB:CC:DD:EE:FF","count":40}',
            "40 wrong PINs from AA:BB:CC:DD:EE:FF",
        ),
        (
            "org.chargepin.PinLockout",
            '{"phone":"AA:BB:CC:DD:EE:FF","failures":5,"duration":300}',
            "5 wrong PINs from AA:BB:CC:DD:EE:FF: locked until 14:05 UTC",
        ),
        ("org.chargepin.PinLockout", '{"duration":3600}', "wrong PINs: locked until 15:00 UTC"),
        ("org.chargepin.PinLockout", "{}", "wrong PINs: pairing locked"),
        (
            "MaintenanceLoginAccepted",
            '{"phone":"AA:BB:CC:DD:EE:FF"}',
            "AA:BB:CC:DD:EE:FF paired with the PIN",
        ),
        (
            "ReconfigurationOfSecurityParameters",
            '{"change":"pin_changed","origin":"ocpp"}',
            "the PIN was changed",
        ),
        (
            "ReconfigurationOfSecurityParameters",
            '{"change":"pin_enabled","origin":"ble"}',
            "the PIN was enabled over Bluetooth",
        ),
        (
            "org.chargepin.PhoneRemoved",
            '{"phone":"D1:22:33:44:55:66"}',
            "D1:22:33:44:55:66 removed from the charger",
        ),
        (
            "org.chargepin.EventsDropped",
            '{"dropped":17}',
            "the charger's event queue was full: 17 events were not kept",
        ),
        ("StartupOfTheDevice", None, "the charger started"),
        (
            "ResetOrReboot",
            '{"origin":"ocpp","reset":"Immediate"}',
            "the CSMS reset the charger (at once)",
        ),
        ("ResetOrReboot", '{"origin":"ocpp","reset":"<b>"}', "the charger was reset or rebooted"),
        ("SomethingElse", "free text", "security event SomethingElse"),
    ],
)
def test_meaning(event_type: str, tech_info: str | None, words: str) -> None:
    assert meaning(event_type, tech_info, AT) == words


@pytest.mark.parametrize(
    "tech_info",
    [
        '{"phone":"<script>alert(1)</script>","failures":5,"duration":300}',
        '{"phone":"AA:BB:CC:DD:EE:FF","failures":-1,"duration":1e300}',
        '{"phone":["AA:BB:CC:DD:EE:FF"],"failures":true,"duration":"300"}',
        "not json",
        "[1,2,3]",
    ],
)
def test_a_station_s_text_is_never_echoed_and_bad_numbers_are_left_out(tech_info: str) -> None:
    words = meaning("org.chargepin.PinLockout", tech_info, AT)
    assert "<" not in words and "1e300" not in words and "-1" not in words
    assert "wrong PINs" in words and "script" not in words
