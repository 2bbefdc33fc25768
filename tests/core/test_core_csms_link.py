"""Which CSMS URLs the charger takes and how it backs off (chargepin.core.csms_link)."""

from __future__ import annotations

import pytest

from chargepin.core.csms_link import (
    BACKOFF_MAX,
    BACKOFF_MIN,
    BACKOFF_RANDOM,
    backoff_cap,
    csms_endpoint,
    reconnect_delay,
)
from chargepin.core.errors import InvalidConfig


@pytest.mark.parametrize(
    ("url", "full", "profile"),
    [
        ("ws://127.0.0.1:9000/ocpp/", "ws://127.0.0.1:9000/ocpp/CP-1", 1),
        ("ws://localhost/ocpp/CP-1", "ws://localhost/ocpp/CP-1", 1),
        ("ws://[::1]:8080/", "ws://[::1]:8080/CP-1", 1),
        ("wss://csms.example.com/ocpp/", "wss://csms.example.com/ocpp/CP-1", 2),
        ("wss://csms.example.com", "wss://csms.example.com/CP-1", 2),
    ],
)
def test_accepted_urls_end_in_the_identity(url: str, full: str, profile: int) -> None:
    endpoint = csms_endpoint(url, "CP-1")
    assert (endpoint.url, endpoint.security_profile) == (full, profile)


def test_plain_ws_beyond_loopback_needs_insecure() -> None:
    with pytest.raises(InvalidConfig, match="in clear"):
        csms_endpoint("ws://10.0.0.5/ocpp/", "CP-1")
    with pytest.raises(InvalidConfig, match="in clear"):
        csms_endpoint("ws://127.0.0.1.evil.example/ocpp/", "CP-1")
    assert csms_endpoint("ws://10.0.0.5/ocpp/", "CP-1", insecure=True).security_profile == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "1 to 512"),
        ("wss://x/" + "a" * 600, "1 to 512"),
        ("https://csms.example/", "must start with wss://"),
        ("wss:///ocpp/", "no host"),
        ("wss://csms.example:99999/", "not a valid URL"),
        ("wss://me:pw@csms.example/", "credentials"),
        ("wss://csms.example/ocpp/?x=1", "query"),
        ("wss://csms.example/ocpp/CP-2", "end with the station identity /CP-1"),
    ],
)
def test_refusals_say_what_to_change(url: str, message: str) -> None:
    with pytest.raises(InvalidConfig, match=message):
        csms_endpoint(url, "CP-1")


def test_back_off_doubles_with_jitter_up_to_the_cap() -> None:
    assert [reconnect_delay(n, 0.0) for n in range(4)] == [
        BACKOFF_MIN,
        2 * BACKOFF_MIN,
        4 * BACKOFF_MIN,
        8 * BACKOFF_MIN,
    ]
    assert reconnect_delay(10_000, 0.0) == BACKOFF_MAX
    assert reconnect_delay(3, 0.999) == pytest.approx(
        8 * BACKOFF_MIN * (1 + BACKOFF_RANDOM * 0.999)
    )
    assert reconnect_delay(0, 5.0) == BACKOFF_MIN * (1 + BACKOFF_RANDOM)  # clamped
    with pytest.raises(InvalidConfig):
        reconnect_delay(-1, 0.0)


def test_a_back_off_cap_is_taken_from_the_first_wait_to_the_standard_cap() -> None:
    assert backoff_cap(1) == BACKOFF_MIN
    assert backoff_cap(BACKOFF_MAX) == BACKOFF_MAX
    assert [reconnect_delay(n, 0.0, maximum=backoff_cap(2.5)) for n in range(4)] == [
        1.0,
        2.0,
        2.5,
        2.5,
    ]
    for wrong in (0.5, 301, float("nan"), True, "5"):
        with pytest.raises(InvalidConfig, match="back-off cap"):
            backoff_cap(wrong)  # type: ignore[arg-type]
