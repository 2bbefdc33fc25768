"""The charger's service console: factory provisioning, the state report, and running the daemon.

`chargepin charger init|info|pin|run` are thin wrappers around these functions, so the factory
line, a support engineer and the tests all provision and inspect a charger the same way. Every
rule comes from `chargepin.core` (PIN policy, security profiles, lockout); this module only
gathers the answers and hands them to the store or the daemon.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chargepin.charger.store import IRK_LENGTH, ChargerIdentity, StateStore
from chargepin.clock import Clock, SystemClock
from chargepin.core import lockout, profiles
from chargepin.core.addresses import random_static_address
from chargepin.core.csms_link import BACKOFF_MAX, CsmsEndpoint, backoff_cap, csms_endpoint
from chargepin.core.errors import InvalidConfig, ProvisioningRefused
from chargepin.core.keys import SECRET_SIZE, new_secret
from chargepin.core.lockout import LockoutConfig
from chargepin.core.pin import Pin
from chargepin.core.policy import FirmwareVersion, PinMode, PinPolicy, pin_policy
from chargepin.core.profiles import DEFAULT_PROFILE, ProfileName
from chargepin.core.provisioning import ProvisioningBundle
from chargepin.radio.keystore import BondInfo

if TYPE_CHECKING:
    from chargepin.charger.daemon import ChargerDaemon


@dataclass(frozen=True)
class LockoutOverrides:
    """Factory overrides of the profile's lockout numbers; None keeps the profile's value."""

    failures: int | None = None
    window: float | None = None
    duration: float | None = None

    def as_kwargs(self) -> dict[str, Any]:
        """The overrides as `LockoutConfig` field names, only those that were given."""
        fields = {"failures": self.failures, "window": self.window, "duration": self.duration}
        return {name: value for name, value in fields.items() if value is not None}


@dataclass(frozen=True)
class Provisioned:
    """What `provision_charger` wrote, without the secret: the summary the factory prints."""

    identity: ChargerIdentity
    policy: PinPolicy
    pin_enabled: bool
    profile: ProfileName
    lockout: LockoutConfig
    path: Path


def parse_secret(text: str) -> bytes:
    """A factory secret given as 64 hexadecimal characters (the fleet service's export format)."""
    cleaned = text.strip()
    expected = 2 * SECRET_SIZE
    if len(cleaned) != expected:
        raise InvalidConfig(
            f"the factory secret must be {expected} hexadecimal characters ({SECRET_SIZE} "
            f"bytes), got {len(cleaned)}; omit --secret to generate a new one"
        )
    if any(char not in string.hexdigits for char in cleaned):
        raise InvalidConfig(
            f"the factory secret must be {expected} hexadecimal characters (0-9, a-f), "
            "got other characters; omit --secret to generate a new one"
        )
    return bytes.fromhex(cleaned)


@dataclass(frozen=True)
class FactoryIdentity:
    """Who a charger is, as the factory station was told: options, a bundle file, or both."""

    serial: str
    model: str
    firmware: FirmwareVersion
    produced: datetime.date
    secret: bytes | None = field(default=None, repr=False)


def read_bundle(path: Path) -> ProvisioningBundle:
    """The provisioning bundle in `path` (core.provisioning format), or InvalidConfig."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidConfig(
            f"cannot read the provisioning bundle {path}: {error.strerror}; check the path"
        ) from None
    except UnicodeDecodeError as error:
        raise InvalidConfig(
            f"provisioning bundle {path} is not UTF-8 text ({error.reason} at byte "
            f"{error.start}); export it again from the fleet service (`chargepin fleet provision`)"
        ) from None
    return ProvisioningBundle.from_json(text)


def factory_identity(
    bundle: Path | None,
    *,
    serial: str | None,
    model: str | None,
    firmware: FirmwareVersion | None,
    produced: datetime.date | None,
    secret: str | None,
) -> FactoryIdentity:
    """The identity to provision: from the bundle if given, else from the explicit values.

    An explicit value that contradicts the bundle is refused rather than silently preferred:
    a station that passes both means one of them is for another charger.
    """
    explicit: dict[str, object] = {
        "serial": serial,
        "model": model,
        "firmware": firmware,
        "produced": produced,
    }
    parsed_secret = None if secret is None else parse_secret(secret)
    if bundle is None:
        if serial is None or model is None or firmware is None or produced is None:
            missing = [f"--{name}" for name, value in explicit.items() if value is None]
            raise InvalidConfig(
                f"missing {', '.join(missing)}: give every identity option, or --bundle FILE "
                "from `chargepin fleet provision`"
            )
        return FactoryIdentity(serial, model, firmware, produced, parsed_secret)
    loaded = read_bundle(bundle)
    for name, value in explicit.items():
        if value is not None and value != getattr(loaded, name):
            shown = value.isoformat() if isinstance(value, datetime.date) else str(value)
            raise InvalidConfig(
                f"--{name} {shown!r} contradicts the bundle {bundle} ({name} "
                f"{getattr(loaded, name)!s}); omit --{name}, the bundle says it"
            )
    if parsed_secret is not None and parsed_secret != loaded.secret:
        raise InvalidConfig(
            f"--secret (or CHARGEPIN_FACTORY_SECRET) contradicts the bundle {bundle}; "
            "omit it, the bundle carries the factory secret"
        )
    return FactoryIdentity(
        loaded.serial, loaded.model, loaded.firmware, loaded.produced, loaded.secret
    )


def lockout_config(
    profile: ProfileName | str, overrides: LockoutOverrides | None = None
) -> LockoutConfig:
    """The lockout numbers of `profile` with the factory's overrides applied (validated by core)."""
    return profiles.lockout_config(profile, **(overrides or LockoutOverrides()).as_kwargs())


def provision_charger(
    path: Path,
    *,
    serial: str,
    model: str,
    firmware: FirmwareVersion,
    produced: datetime.date,
    address: str | None = None,
    secret: bytes | None = None,
    profile: ProfileName | str = DEFAULT_PROFILE,
    overrides: LockoutOverrides | None = None,
) -> Provisioned:
    """Create a charger's state file at the factory: identity, secret, PIN class and lockout.

    The PIN class follows the vendor's policy (core.policy): mandatory chargers leave the factory
    with the PIN on, optional ones with it off (the owner enables it later with a ticket), and a
    firmware without PIN support is refused with the policy's reason, because shipping it would
    promise a protection it cannot give.
    """
    policy = pin_policy(model, firmware, produced)
    if policy.mode is PinMode.UNSUPPORTED:
        raise ProvisioningRefused(f"cannot provision {serial}: {policy.reason}")
    profile = profiles.profile_name(profile)
    config = lockout_config(profile, overrides)
    identity = ChargerIdentity(
        serial=serial,
        model=model,
        firmware=firmware,
        produced=produced,
        address=address.strip().upper() if address is not None else random_static_address(),
        irk=secrets.token_bytes(IRK_LENGTH),
    )
    pin_enabled = policy.mode is PinMode.MANDATORY
    store = StateStore.create(
        path,
        identity,
        secret if secret is not None else new_secret(),
        profile,
        config,
        pin_enabled,
    )
    store.close()
    return Provisioned(identity, policy, pin_enabled, profile, config, path)


@dataclass(frozen=True)
class LockoutReport:
    """The lockout as of one instant: whether pairing is refused, for how long, and why."""

    locked: bool
    retry_after: float
    failures_in_window: int
    config: LockoutConfig


@dataclass(frozen=True)
class ChargerReport:
    """Everything a support engineer reads from a charger's state file, never the secret or PIN."""

    identity: ChargerIdentity
    policy: PinPolicy
    profile: ProfileName
    pin_enabled: bool
    custom_pin: bool
    epoch: int
    generation: int
    lockout: LockoutReport
    bonds: list[BondInfo]
    counters: dict[str, int]
    at: float
    csms_queue: int = 0
    """Security events waiting for the CSMS (sent once the OCPP link is up)."""
    csms_queue_since: float | None = None
    """When the oldest of them happened."""
    csms_password_rotated: bool = False
    """A CSMS replaced the derived Basic auth password (SecurityCtrlr.BasicAuthPassword)."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (`chargepin charger info --json`)."""
        identity = self.identity
        return {
            "serial": identity.serial,
            "model": identity.model,
            "firmware": str(identity.firmware),
            "produced": identity.produced.isoformat(),
            "address": identity.address,
            "pin_class": self.policy.mode.value,
            "pin_class_reason": self.policy.reason,
            "pin_enabled": self.pin_enabled,
            "custom_pin": self.custom_pin,
            "epoch": self.epoch,
            "generation": self.generation,
            "profile": self.profile,
            "lockout": {
                "locked": self.lockout.locked,
                "retry_after": self.lockout.retry_after,
                "failures_in_window": self.lockout.failures_in_window,
                "config": self.lockout.config.to_dict(),
            },
            "bonds": [
                {"address": b.address, "authenticated": b.authenticated, "created": b.created}
                for b in self.bonds
            ],
            "counters": dict(self.counters),
            "ocpp": {
                "queued_events": self.csms_queue,
                "oldest_queued_at": self.csms_queue_since,
                "password": "set by a CSMS" if self.csms_password_rotated else "derived",
            },
            "at": self.at,
        }


def charger_report(path: Path, clock: Clock | None = None) -> ChargerReport:
    """Read a charger's state file into a report, evaluating the lockout at the clock's now.

    Safe while the daemon runs: SQLite in WAL mode lets this reader see the last commit.
    """
    now = (clock or SystemClock()).now()
    with StateStore.open(path) as store:
        identity = store.identity
        config = store.lockout_config
        state = store.lockout_state
        return ChargerReport(
            identity=identity,
            policy=pin_policy(identity.model, identity.firmware, identity.produced),
            profile=store.profile,
            pin_enabled=store.pin_enabled,
            custom_pin=store.custom_pin is not None,
            epoch=store.epoch,
            generation=store.generation,
            lockout=LockoutReport(
                locked=lockout.is_locked(config, state, now),
                retry_after=lockout.retry_after(config, state, now),
                failures_in_window=len(state.prune(config, now).failures),
                config=config,
            ),
            bonds=store.keystore.list_bonds(),
            counters=store.counters(),
            at=now,
            csms_queue=store.queue_length(),
            csms_queue_since=next((e.first_at for e in store.queued_events(limit=1)), None),
            csms_password_rotated=store.csms_password_rotated,
        )


def current_pin(path: Path) -> Pin:
    """The PIN pairing needs right now (the charger's own display or service console)."""
    with StateStore.open(path) as store:
        return store.current_pin()


@dataclass(frozen=True)
class CsmsOptions:
    """`--csms URL [--csms-ca FILE] [--insecure-csms] [--csms-backoff-max S]`, checked once
    the serial is known (the back-off cap at once)."""

    url: str
    ca_file: Path | None = None
    insecure: bool = False
    backoff_max: float = BACKOFF_MAX
    """The longest wait between two connection attempts (core.csms_link.backoff_cap)."""

    def __post_init__(self) -> None:
        backoff_cap(self.backoff_max)

    def endpoint(self, serial: str) -> CsmsEndpoint:
        """The checked endpoint (core.csms_link), or InvalidConfig saying what to change."""
        if self.ca_file is not None and not self.ca_file.is_file():
            raise InvalidConfig(f"--csms-ca {self.ca_file}: no such file (a PEM CA certificate)")
        endpoint = csms_endpoint(self.url, serial, insecure=self.insecure)
        if self.ca_file is not None and endpoint.security_profile < 2:
            raise InvalidConfig("--csms-ca is for a wss:// CSMS; this URL is ws://")
        return endpoint


async def run_charger(
    state: Path,
    transport: str,
    *,
    advertising_interval: float,
    on_ready: Callable[[ChargerDaemon], None],
    stop: asyncio.Event,
    csms: CsmsOptions | None = None,
) -> None:
    """Run the charger daemon on `transport` until `stop` is set, then shut it down cleanly.

    The state file is opened (and the CSMS options checked) before the radio so that a wrong
    path fails without touching the controller. `on_ready` is called once the charger
    advertises (connectable); with `csms` the OCPP link runs beside it as its own task. On the
    way out the link stops, the daemon disconnects every phone and the store is closed. A Reset
    from the CSMS restarts all of it as a reboot would (the next BootNotification says
    RemoteReset).
    """
    after_reset = False
    while True:
        after_reset = await _run_charger_once(
            state, transport, advertising_interval, on_ready, stop, csms, after_reset
        )
        if not after_reset or stop.is_set():
            return


async def _run_charger_once(
    state: Path,
    transport: str,
    advertising_interval: float,
    on_ready: Callable[[ChargerDaemon], None],
    stop: asyncio.Event,
    csms: CsmsOptions | None,
    after_reset: bool,
) -> bool:
    """One life of the daemon, until `stop` or a CSMS's Reset (then True)."""
    # Imported here so that provisioning and inspecting a state file do not load the whole
    # Bluetooth stack (half a second on a charger's board, on every service command).
    from chargepin.charger.daemon import ChargerDaemon
    from chargepin.radio.transport import open_hci

    store = StateStore.open(state)
    try:
        endpoint = None if csms is None else csms.endpoint(store.identity.serial)
        async with open_hci(transport) as endpoints:
            daemon = ChargerDaemon(store, endpoints, advertising_interval=advertising_interval)
            link = None
            try:
                await daemon.start()
                waits = [asyncio.ensure_future(stop.wait())]
                if endpoint is not None and csms is not None:
                    from ocpp.v201.enums import BootReasonEnumType

                    from chargepin.charger.ocpp_station import (
                        StationConfig,
                        StationLink,
                        StationTimings,
                    )

                    timings = StationTimings(backoff_max=csms.backoff_max)
                    config = StationConfig(endpoint, csms.ca_file, timings)
                    if after_reset:
                        reason = BootReasonEnumType.remote_reset
                        config = dataclasses.replace(config, boot_reason=reason)
                    link = StationLink(daemon, config)
                    link.start()
                    waits.append(asyncio.ensure_future(link.resets.requested.wait()))
                on_ready(daemon)
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for wait in waits:
                        wait.cancel()
                return link is not None and link.resets.requested.is_set()
            finally:
                if link is not None:
                    await link.stop()
                await daemon.stop()
    finally:
        store.close()


def csms_password(path: Path) -> str:
    """The Basic auth password the charger presents to its CSMS (derived, or the one a CSMS set)."""
    with StateStore.open(path) as store:
        return store.csms_password
