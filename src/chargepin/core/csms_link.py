"""The charger's OCPP link to its CSMS: which URL is acceptable, and when to try again.

OCPP 2.0.1 Part 2 A00 (security profiles) and Part 4 (OCPP-J): the URL ends with the station's
identity; plain `ws://` is profile 1 (Basic auth in clear, only on a trusted network), `wss://`
with a server certificate is profile 2. We refuse profile 1 except to the loopback interface
unless the operator says `--insecure-csms`. Reconnections back off by doubling with random
jitter (OCPPCommCtrlr RetryBackOffWaitMinimum / RetryBackOffRandomRange).
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from dataclasses import dataclass
from typing import Final

from chargepin.core.errors import InvalidConfig

SUBPROTOCOL: Final = "ocpp2.0.1"
"""The WebSocket subprotocol of OCPP-J 2.0.1."""

URL_MAX: Final = 512
"""The longest CSMS URL taken (the standard's OcppCsmsUrl is a string of at most 512)."""

BACKOFF_MIN: Final = 1.0
BACKOFF_MAX: Final = 300.0
BACKOFF_RANDOM: Final = 0.5
"""Seconds: the first wait, the longest, and the random range added to every wait (a fraction
of the wait: a fleet of chargers cut off together comes back spread out, not at one instant)."""


@dataclass(frozen=True)
class CsmsEndpoint:
    """Where the charger connects, checked: the URL ending in its identity, and the profile."""

    url: str
    security_profile: int
    """1: ws:// with Basic auth (loopback or --insecure-csms); 2: wss:// with Basic auth."""
    host: str


def csms_endpoint(url: str, serial: str, *, insecure: bool = False) -> CsmsEndpoint:
    """`url` as the endpoint of charger `serial`, or InvalidConfig saying what to change.

    A URL ending in "/" gets the serial appended; one ending in anything else must end in
    "/" + serial (the station identity). Credentials, queries and fragments are refused: the
    password comes from the state file, never from a command line.
    """
    if not isinstance(url, str) or not url or len(url) > URL_MAX:
        raise InvalidConfig(f"the CSMS URL must be 1 to {URL_MAX} characters, got {url!r}")
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as error:
        raise InvalidConfig(f"the CSMS URL {url!r} is not a valid URL: {error}") from None
    if parts.scheme not in ("ws", "wss"):
        raise InvalidConfig(
            f"the CSMS URL must start with wss:// (or ws:// on loopback), got {url!r}"
        )
    if not host:
        raise InvalidConfig(f"the CSMS URL {url!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidConfig(
            "the CSMS URL must not carry credentials: the charger authenticates with its serial "
            "and the password in its state file (`chargepin charger csms-password`)"
        )
    if parts.query or parts.fragment:
        raise InvalidConfig(f"the CSMS URL {url!r} must not have a query or a fragment")
    path = parts.path or "/"
    if path.endswith("/"):
        path += serial
    elif path.rsplit("/", 1)[-1] != serial:
        raise InvalidConfig(
            f"the CSMS URL must end with the station identity /{serial} (OCPP-J), got {url!r}; "
            f"e.g. wss://csms.example.com/ocpp/{serial}"
        )
    if parts.scheme == "ws" and not insecure and not is_loopback(host):
        raise InvalidConfig(
            f"ws:// to {host} would send the charger's password in clear (OCPP security profile "
            "1); use wss:// (with --csms-ca for a private CA), or --insecure-csms on a trusted "
            "network"
        )
    full = urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    return CsmsEndpoint(full, 2 if parts.scheme == "wss" else 1, host)


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine's loopback interface (localhost, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def backoff_cap(seconds: float) -> float:
    """`seconds` as the longest reconnect wait, or InvalidConfig: from BACKOFF_MIN to BACKOFF_MAX.

    The default is BACKOFF_MAX. A lower cap makes a charger come back sooner after a long CSMS
    outage (the tests' fleet restarts, a site whose CSMS is on the same network); a higher one
    is refused: OCPP's back-off is there to spare the CSMS, not to leave a charger silent.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds != seconds:
        raise InvalidConfig(f"the CSMS back-off cap must be a number of seconds, got {seconds!r}")
    if not BACKOFF_MIN <= seconds <= BACKOFF_MAX:
        raise InvalidConfig(
            f"the CSMS back-off cap must be {BACKOFF_MIN:g} to {BACKOFF_MAX:g} s, got {seconds:g}"
        )
    return float(seconds)


def reconnect_delay(
    failures: int,
    random01: float,
    minimum: float = BACKOFF_MIN,
    maximum: float = BACKOFF_MAX,
) -> float:
    """Seconds to wait before the next connection attempt after `failures` failed in a row.

    `minimum` doubled per failure up to `maximum`, plus `random01` (uniform in [0, 1), the
    caller's randomness) times BACKOFF_RANDOM of that wait.
    """
    if failures < 0:
        raise InvalidConfig(f"failures must be 0 or more, got {failures}")
    base = min(maximum, minimum * 2.0 ** min(failures, 30))
    return base * (1.0 + BACKOFF_RANDOM * min(max(random01, 0.0), 1.0))
