"""The charger daemon: a Bumble LE peripheral that pairs only with the PIN and guards the charger.

One `ChargerDaemon` owns the Bluetooth device; the `StateStore` owns the state. SMP hooks and GATT
callbacks ask `chargepin.core.attempts` what to do and persist the answer before serving the next
request (DESIGN.md, "Pairing", "Lockout", "PIN epochs").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from bumble import att, hci, smp
from bumble.core import AdvertisingData
from bumble.device import Connection, Device, DeviceConfiguration
from bumble.keys import PairingKeys
from bumble.pairing import PairingConfig, PairingDelegate

from chargepin.charger.admin import (
    UNPAIRED_ACTIONS,
    ActionNotAllowed,
    NeedsPairedLink,
    TicketRejected,
    apply_ticket,
    rejected,
)
from chargepin.charger.evse import ChargingPoint
from chargepin.charger.gatt_service import build_service, harden_server
from chargepin.charger.store import StateStore
from chargepin.clock import Clock, SystemClock
from chargepin.core import attempts, lockout, protocol
from chargepin.core.attempts import AttemptKind, PairingRequest, Refusal
from chargepin.core.epochs import pin_fingerprint
from chargepin.core.policy import PinMode, pin_policy
from chargepin.core.profiles import security_profile
from chargepin.radio.virtual import HciEndpoints

logger = logging.getLogger(__name__)

KEYBOARD_CAPABILITIES = (
    smp.SMP_KEYBOARD_ONLY_IO_CAPABILITY,
    smp.SMP_KEYBOARD_DISPLAY_IO_CAPABILITY,
)
SMP_REFUSAL_CODES = {
    Refusal.LOCKED: smp.ErrorCode.REPEATED_ATTEMPTS,
    Refusal.BUSY: smp.ErrorCode.UNSPECIFIED_REASON,
    Refusal.NEEDS_PASSKEY: smp.ErrorCode.AUTHENTICATION_REQUIREMENTS,
}
FAILURE_KINDS: dict[int, AttemptKind] = {
    smp.ErrorCode.CONFIRM_VALUE_FAILED: AttemptKind.WRONG_PIN,
    smp.ErrorCode.DHKEY_CHECK_FAILED: AttemptKind.WRONG_PIN,
    smp.ErrorCode.PASSKEY_ENTRY_FAILED: AttemptKind.CANCELLED,
}
PIN_MODE_CODES = {
    PinMode.UNSUPPORTED: protocol.PinModeCode.UNSUPPORTED,
    PinMode.OPTIONAL: protocol.PinModeCode.OPTIONAL,
    PinMode.MANDATORY: protocol.PinModeCode.MANDATORY,
}
CHALLENGE_LIFETIME = 120.0
UNSECURED_LINK_TIMEOUT = 30.0
"""Seconds a link may stay unencrypted outside a pairing (reading the open info takes
milliseconds; a pairing has its own SMP timer): idle strangers must not hold the link slots."""
EVICTION_GRACE = 5.0
"""Seconds a new link is safe from eviction: enough for a phone to encrypt with its bond, or to
fetch an admission ticket from the fleet and start pairing."""
POWER_OFF = hci.HCI_ErrorCode.REMOTE_DEVICE_TERMINATED_CONNECTION_DUE_TO_POWER_OFF_ERROR
RESULT_READ_GRACE = 2.0  # seconds the phone gets to read the receipt before links drop


@dataclass
class LinkState:
    """What the daemon knows about one connected phone (never persisted)."""

    challenge: bytes | None = None
    challenge_at: float = 0.0
    admin_result: protocol.AdminResult | None = None
    pairing_started: bool = False
    pairing_closed: bool = False
    refused: bool = False
    admitted: bool = False  # a member's ADMIT_PAIRING ticket: may pair despite a lockout
    connected_at: float = 0.0  # event-loop time, to evict the oldest idle stranger first
    smp_timer: asyncio.TimerHandle | None = None
    idle_timer: asyncio.TimerHandle | None = None
    result_read: asyncio.Event = field(default_factory=asyncio.Event)


class _PasskeyDisplay(PairingDelegate):
    """DisplayOnly: the charger 'shows' its PIN, the phone types it (passkey entry)."""

    def __init__(self, store: StateStore) -> None:
        super().__init__(io_capability=PairingDelegate.IoCapability.DISPLAY_OUTPUT_ONLY)
        self._store = store

    async def generate_passkey(self) -> int:
        return self._store.current_pin().passkey

    async def confirm(self, auto: bool = False) -> bool:
        return False  # Just Works never reaches here while the PIN is on; refuse if it does


class _GuardedSession(smp.Session):
    """An SMP session that asks the daemon before serving a Pairing Request.

    Bumble's delegate can only refuse with 0x05; the lockout needs 0x09 Repeated Attempts and
    the Just Works refusal 0x03 Authentication Requirements (Core spec Vol 3 Part H 3.5.5).
    """

    daemon: ChargerDaemon

    def on_smp_pairing_request_command(self, command: smp.SMP_Pairing_Request_Command) -> None:
        refusal = self.daemon.on_pairing_request(self.connection, command)
        if refusal is None:
            super().on_smp_pairing_request_command(command)
            return
        self.send_pairing_failed(SMP_REFUSAL_CODES[refusal])
        self.daemon.drop_link(self.connection, hci.HCI_ErrorCode.AUTHENTICATION_FAILURE_ERROR)

    def send_pairing_failed(self, error: smp.ErrorCode) -> None:
        """Account for a failure the charger detected (a wrong PIN) before the phone hears of it.

        Bumble sends the Pairing Failed PDU first and reports the failure after: a charger
        killed in between forgot an attempt whose answer the phone already had, so the attacker
        kept both the epoch (the PIN bits it learned) and a free attempt (`chargepin lab
        crash-loop` caught it on every kill made as the phone saw its wrong PIN).
        """
        self.daemon.on_pairing_failure(self.connection, error)
        super().send_pairing_failed(error)


class ChargerDaemon:
    """The Bluetooth side of one charger."""

    def __init__(
        self,
        store: StateStore,
        hci_endpoints: HciEndpoints,
        *,
        clock: Clock | None = None,
        advertising_interval: float = 20.0,
        max_links: int = 4,
        smp_timeout: float = attempts.SMP_TIMEOUT,
        unsecured_link_timeout: float = UNSECURED_LINK_TIMEOUT,
        eviction_grace: float = EVICTION_GRACE,
    ) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.evse = ChargingPoint()
        self.profile = security_profile(store.profile, store.lockout_config)
        self.advertising_interval = advertising_interval
        self.max_links = max_links
        self.smp_timeout = smp_timeout
        self.unsecured_link_timeout = unsecured_link_timeout
        self.eviction_grace = eviction_grace
        self._room_timer: asyncio.TimerHandle | None = None
        self.links: dict[int, LinkState] = {}
        self.pairing_handle: int | None = None
        self._advertising_lock = asyncio.Lock()
        self._advertised: tuple[bytes, bytes] | None = None
        self._stopping = False
        self._lock_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._grace_tasks: set[asyncio.Task[Any]] = set()
        identity = store.identity
        config = DeviceConfiguration(
            name=f"{identity.model} {identity.serial}",
            address=hci.Address(identity.address),
            irk=identity.irk,
            identity_address_type=hci.Address.RANDOM_DEVICE_ADDRESS,
        )
        self.device = Device.from_config_with_hci(config, hci_endpoints.source, hci_endpoints.sink)
        self.device.keystore = store.keystore
        session_class = type("ChargerSmpSession", (_GuardedSession,), {"daemon": self})
        self.device.smp_session_proxy = session_class
        self.device.pairing_config_factory = self._pairing_config
        self.device.add_service(build_service(self.device, self))
        harden_server(self.device)
        self.device.on(self.device.EVENT_CONNECTION, self._on_connection)
        self._status_characteristic = self._find_characteristic(protocol.STATUS_UUID)
        self.evse.subscribe(self._on_status_change)

    # ---------------------------------------------------------------- lifecycle

    @property
    def address(self) -> str:
        return str(self.device.random_address)

    async def start(self) -> None:
        """Power on and advertise; returns when the charger is connectable."""
        await self.device.power_on()
        await self._refresh_advertising()
        self._schedule_lock_expiry()

    async def stop(self) -> None:
        """Disconnect every phone, stop advertising and release the controller."""
        self._stopping = True
        for timer in (self._lock_timer, self._room_timer):
            if timer is not None:
                timer.cancel()
        for link in self.links.values():
            if link.idle_timer is not None:
                link.idle_timer.cancel()
        for task in list(self._grace_tasks):
            task.cancel()
        # Let HCI commands in flight complete: cancelling one makes Bumble's host trip over the
        # late Command Complete. They are short, so this waits milliseconds.
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=3.0)
        with contextlib.suppress(Exception):
            await self.device.stop_advertising()
        for connection in list(self.device.connections.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.disconnect(POWER_OFF), 2.0)
        with contextlib.suppress(Exception):
            await self.device.power_off()

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---------------------------------------------------------------- advertising

    def info(self) -> protocol.ChargerInfo:
        """The open info: identity, PIN class and state, epoch, lockout, PIN fingerprint."""
        identity = self.store.identity
        now = self.clock.now()
        state = self.store.lockout_state
        flags = protocol.InfoFlag(0)
        if self.store.pin_enabled:
            flags |= protocol.InfoFlag.PIN_ENABLED
        if lockout.is_locked(self.profile.lockout, state, now):
            flags |= protocol.InfoFlag.LOCKED
        if self.pairing_handle is not None:
            flags |= protocol.InfoFlag.PAIRING_BUSY
        if self.profile.rotate_on_failure:
            flags |= protocol.InfoFlag.HARDENED
        policy = pin_policy(identity.model, identity.firmware, identity.produced)
        return protocol.ChargerInfo(
            serial=identity.serial,
            model=identity.model,
            firmware=identity.firmware,
            pin_mode=PIN_MODE_CODES[policy.mode],
            flags=flags,
            epoch=self.store.epoch,
            retry_after=int(-(-lockout.retry_after(self.profile.lockout, state, now) // 1)),
            fingerprint=pin_fingerprint(
                self.store.secret, identity.serial, self.store.current_pin()
            ),
        )

    def _advertising_data(self) -> tuple[bytes, bytes]:
        info = self.info()
        # The busy flag stays on the info characteristic only: advertising it would restart
        # advertising twice inside every pairing (measured: +10 % pairing time, PERFORMANCE.md).
        flags = info.flags & ~protocol.InfoFlag.PAIRING_BUSY
        payload = protocol.AdvertPayload(info.serial, flags, info.epoch).encode()
        advert = AdvertisingData(
            [
                (AdvertisingData.FLAGS, bytes([0x06])),  # LE General Discoverable, no BR/EDR
                (
                    AdvertisingData.MANUFACTURER_SPECIFIC_DATA,
                    protocol.COMPANY_ID.to_bytes(2, "little") + payload,
                ),
            ]
        )
        name = f"{info.model} {info.serial}".encode()[:29]
        scan_response = AdvertisingData([(AdvertisingData.COMPLETE_LOCAL_NAME, name)])
        return bytes(advert), bytes(scan_response)

    async def _refresh_advertising(self) -> None:
        """Advertise the current data while there is room for another phone.

        The running advertising set is updated in place (or re-enabled after a connection ended
        it), never stopped and recreated: a phone's CONNECT_IND that arrives in such a gap is
        lost and leaves the phone on a link the charger never saw.
        """
        async with self._advertising_lock:
            if self._stopping:
                return
            advertising_set = self.device.legacy_advertising_set
            if len(self.device.connections) >= self.max_links:
                if advertising_set is not None and advertising_set.enabled:
                    await advertising_set.stop()
                return
            advert, scan_response = self._advertising_data()
            if advertising_set is None:  # first start, or a controller without extended sets
                if self.device.is_advertising and self._advertised == (advert, scan_response):
                    return
                self._advertised = (advert, scan_response)
                await self.device.start_advertising(
                    advertising_data=advert,
                    scan_response_data=scan_response,
                    advertising_interval_min=self.advertising_interval,
                    advertising_interval_max=self.advertising_interval,
                    own_address_type=hci.OwnAddressType.RANDOM,
                )
                return
            if self._advertised != (advert, scan_response):
                self._advertised = (advert, scan_response)
                await advertising_set.set_advertising_data(advert)
                await advertising_set.set_scan_response_data(scan_response)
            if not advertising_set.enabled:
                await advertising_set.start()

    def _state_changed(self) -> None:
        """Advertised flags and epoch follow the state."""
        if not self._stopping:
            self._spawn(self._refresh_advertising())
            self._schedule_lock_expiry()

    def _schedule_lock_expiry(self) -> None:
        if self._lock_timer is not None:
            self._lock_timer.cancel()
            self._lock_timer = None
        remaining = lockout.retry_after(
            self.profile.lockout, self.store.lockout_state, self.clock.now()
        )
        if remaining > 0:
            loop = asyncio.get_running_loop()
            self._lock_timer = loop.call_later(remaining + 0.05, self._state_changed)

    # ---------------------------------------------------------------- connections

    def _on_connection(self, connection: Connection) -> None:
        if connection.role != hci.Role.PERIPHERAL:
            return
        loop = asyncio.get_running_loop()
        link = self.links[connection.handle] = LinkState(connected_at=loop.time())
        link.idle_timer = loop.call_later(
            self.unsecured_link_timeout, self._drop_if_unsecured, connection, link
        )
        self._make_room()
        connection.on(connection.EVENT_PAIRING, lambda keys: self._on_pairing(connection, keys))
        connection.on(
            connection.EVENT_PAIRING_FAILURE,
            lambda reason: self.on_pairing_failure(connection, reason),
        )
        connection.on(
            connection.EVENT_DISCONNECTION, lambda reason: self._on_disconnection(connection, link)
        )
        self._spawn(self._refresh_advertising())

    def _idle_stranger(self, connection: Connection, link: LinkState) -> bool:
        """Unencrypted and not pairing: a link that holds a slot and proves nothing."""
        pairing = link.pairing_started and not link.pairing_closed
        return not connection.is_encrypted and not pairing

    def _drop_if_unsecured(self, connection: Connection, link: LinkState) -> None:
        if connection.handle in self.device.connections and self._idle_stranger(connection, link):
            self.store.record_event(
                "link_dropped", f"{connection.peer_address} idle unencrypted", self.clock.now()
            )
            self.drop_link(connection, hci.HCI_ErrorCode.CONNECTION_TIMEOUT_ERROR)

    def _make_room(self) -> None:
        """With every link slot taken, free one so the charger keeps advertising and a bonded
        phone can always connect: four idle strangers holding every slot used to stop the
        advertising and shut out even the owner (`chargepin lab attack parallel` found it).

        Only links that are unencrypted and not pairing go, the oldest first, and none younger
        than `eviction_grace` (a phone needs that long to encrypt, or to fetch an admission
        ticket and start pairing): if all are younger, the oldest goes when it comes of age.
        """
        if self._room_timer is not None:
            self._room_timer.cancel()
            self._room_timer = None
        if len(self.links) < self.max_links:
            return
        idle = [
            (link.connected_at, connection)
            for connection in self.device.connections.values()
            if (link := self.links.get(connection.handle)) is not None
            and self._idle_stranger(connection, link)
        ]
        if not idle:
            return  # every slot is a paired phone or a pairing: the charger is really full
        connected_at, oldest = min(idle, key=lambda item: item[0])
        loop = asyncio.get_running_loop()
        wait = connected_at + self.eviction_grace - loop.time()
        if wait > 0:
            self._room_timer = loop.call_later(wait, self._make_room)
            return
        self.drop_link(oldest, hci.HCI_ErrorCode.REMOTE_USER_TERMINATED_CONNECTION_ERROR)

    def _on_disconnection(self, connection: Connection, link: LinkState) -> None:
        if link.pairing_started and not link.pairing_closed:
            self._close_attempt(connection, link, AttemptKind.ABORTED)
        if link.smp_timer is not None:
            link.smp_timer.cancel()
        if link.idle_timer is not None:
            link.idle_timer.cancel()
        self.links.pop(connection.handle, None)
        self._spawn(self._refresh_advertising())

    def drop_link(self, connection: Connection, reason: int) -> None:
        """Disconnect after the pending PDUs went out (notes/bumble.md: drain, then disconnect)."""

        async def drop() -> None:
            with contextlib.suppress(Exception):
                await connection.drain()
            if connection.handle not in self.device.connections:
                return  # the phone hung up first
            with contextlib.suppress(Exception):  # raced with the phone's own disconnect
                await asyncio.wait_for(connection.disconnect(reason), 2.0)

        self._spawn(drop())

    # ---------------------------------------------------------------- pairing

    def _pairing_config(self, connection: Connection) -> PairingConfig:
        if self.store.pin_enabled:
            delegate: PairingDelegate = _PasskeyDisplay(self.store)
            mitm = True
        else:
            delegate = PairingDelegate(
                io_capability=PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT
            )
            mitm = False
        return PairingConfig(
            sc=True,
            mitm=mitm,
            bonding=True,
            delegate=delegate,
            identity_address_type=PairingConfig.AddressType.RANDOM,
        )

    def on_pairing_request(
        self, connection: Connection, command: smp.SMP_Pairing_Request_Command
    ) -> Refusal | None:
        """Gate one SMP Pairing Request; a refusal is accounted for before it is sent."""
        link = self.links.setdefault(connection.handle, LinkState())
        now = self.clock.now()
        busy = self.pairing_handle is not None and self.pairing_handle != connection.handle
        refusal = attempts.gate(
            self.profile,
            self.store.lockout_state,
            pin_enabled=self.store.pin_enabled,
            another_pairing_running=busy,
            request=PairingRequest(
                secure_connections=bool(command.auth_req & smp.AuthReq.SC),
                can_enter_passkey=command.io_capability in KEYBOARD_CAPABILITIES,
            ),
            now=now,
            admitted=link.admitted,
        )
        if refusal is None:
            self.pairing_handle = connection.handle
            link.pairing_started = True
            link.pairing_closed = False
            link.refused = False
            link.smp_timer = asyncio.get_running_loop().call_later(
                self.smp_timeout, self._on_smp_timeout, connection, link
            )
            return None
        link.refused = True
        detail = f"{connection.peer_address} {refusal.value}"
        if attempts.counts_as_failure(refusal):
            self._record_failure(AttemptKind.BUSY, now, detail)
        else:
            self.store.record_event("pairing_refused", detail, now)
        return refusal

    def _on_smp_timeout(self, connection: Connection, link: LinkState) -> None:
        if link.pairing_started and not link.pairing_closed:
            self._close_attempt(connection, link, AttemptKind.ABORTED)
            self.drop_link(connection, hci.HCI_ErrorCode.CONNECTION_TIMEOUT_ERROR)

    def _on_pairing(self, connection: Connection, keys: PairingKeys) -> None:
        link = self.links.get(connection.handle)
        if link is None or link.pairing_closed:
            return
        link.pairing_closed = True
        if link.smp_timer is not None:
            link.smp_timer.cancel()
        if self.pairing_handle == connection.handle:
            self.pairing_handle = None
        authenticated = bool(keys.ltk and keys.ltk.authenticated)
        self.store.record_event(
            "pairing_ok",
            f"{connection.peer_address} {'passkey' if authenticated else 'just-works'}",
            self.clock.now(),
        )
        self._state_changed()

    def on_pairing_failure(self, connection: Connection, reason: int) -> None:
        """Close a failed attempt once: before our own Pairing Failed is sent, or on the phone's."""
        link = self.links.get(connection.handle)
        if link is None or link.refused or link.pairing_closed:
            return  # refusals were accounted for by on_pairing_request; closed is counted
        kind = FAILURE_KINDS.get(reason, AttemptKind.FAILED)
        self._close_attempt(connection, link, kind)
        # Bumble keeps the link after a failure and a second pairing on it hangs: drop it.
        self.drop_link(connection, hci.HCI_ErrorCode.AUTHENTICATION_FAILURE_ERROR)

    def _close_attempt(self, connection: Connection, link: LinkState, kind: AttemptKind) -> None:
        link.pairing_closed = True
        if link.smp_timer is not None:
            link.smp_timer.cancel()
        if self.pairing_handle == connection.handle:
            self.pairing_handle = None
        now = self.clock.now()
        self._record_failure(kind, now, f"{connection.peer_address} {kind.value}")

    def _record_failure(self, kind: AttemptKind, now: float, detail: str) -> None:
        """Count the attempt and rotate the PIN if the profile says so: one durable commit.

        This runs synchronously in the SMP handler, before the Pairing Failed PDU is sent, so
        the new lockout state and epoch are on disk before the phone learns the outcome and
        before the event loop can serve the next pairing request.
        """
        with self.store.transaction():
            pin = self.store.pin_state
            outcome = attempts.failed_attempt(
                self.profile, self.store.lockout_state, pin, kind, now
            )
            self.store.record_event("pairing_failed", detail, now)
            self.store.save_lockout_state(outcome.lockout)
            if outcome.pin != pin:
                self.store.save_pin_state(outcome.pin)
            if outcome.locked_now:
                self.store.record_event("locked", f"{outcome.retry_after:.0f} s", now)
        self._state_changed()

    # ---------------------------------------------------------------- GATT handlers

    def _find_characteristic(self, uuid: str) -> Any:
        for attribute in self.device.gatt_server.attributes:
            if getattr(attribute, "uuid", None) == uuid and hasattr(attribute, "properties"):
                return attribute
        raise LookupError(uuid)

    async def _bonded_keys(self, connection: Connection) -> PairingKeys | None:
        return await self.store.keystore.get(str(connection.peer_address))

    async def require_protected(self, connection: Connection) -> None:
        """Protected features need an encrypted link; with the PIN on, a passkey bond too."""
        refusal = await self._protection_refusal(connection)
        if refusal is not None:
            if refusal == protocol.AttAppError.LOCKED:
                self.drop_link(connection, hci.HCI_ErrorCode.AUTHENTICATION_FAILURE_ERROR)
            raise att.ATT_Error(refusal)

    async def _protection_refusal(self, connection: Connection) -> int | None:
        """The ATT error that refuses a protected feature on this link now, or None."""
        link = self.links.get(connection.handle)
        admitted = link is not None and link.admitted
        if not admitted and not attempts.connection_allowed(
            self.profile, self.store.lockout_state, self.clock.now()
        ):
            return int(protocol.AttAppError.LOCKED)
        if not connection.is_encrypted:
            return int(att.ErrorCode.INSUFFICIENT_ENCRYPTION)
        if self.store.pin_enabled:
            keys = await self._bonded_keys(connection)
            if keys is None or keys.ltk is None or not keys.ltk.authenticated:
                return int(att.ErrorCode.INSUFFICIENT_AUTHENTICATION)
        return None

    def read_info(self, connection: Connection) -> bytes:
        return self.info().encode()

    def read_challenge(self, connection: Connection) -> bytes:
        link = self.links.setdefault(connection.handle, LinkState())
        link.challenge = secrets.token_bytes(protocol.CHALLENGE_SIZE)
        link.challenge_at = self.clock.now()
        return link.challenge

    def _take_challenge(self, link: LinkState, now: float) -> bytes | None:
        """The link's outstanding challenge, consumed: any ticket write uses it up."""
        challenge, link.challenge = link.challenge, None
        if challenge is None or now - link.challenge_at > CHALLENGE_LIFETIME:
            return None
        return challenge

    async def write_admin(self, connection: Connection, value: bytes) -> None:
        """Apply a ticket. On a link that is not paired (or not allowed protected features now)
        only an ADMIT_PAIRING ticket is taken: it proves itself, and it is how a member's new
        phone gets past a lockout; anything else gets the protection error it always got."""
        refusal = await self._protection_refusal(connection)
        link = self.links.setdefault(connection.handle, LinkState())
        now = self.clock.now()
        challenge = self._take_challenge(link, now)
        if len(value) > protocol.MAX_TICKET_SIZE:
            link.admin_result = rejected("malformed", f"ticket is {len(value)} octets, too long")
            raise att.ATT_Error(att.ErrorCode.INVALID_ATTRIBUTE_LENGTH)
        bonded = [name for name, _ in await self.store.keystore.get_all()]
        only = None if refusal is None else UNPAIRED_ACTIONS
        try:
            outcome = apply_ticket(self.store, bytes(value), challenge, now, bonded, only)
        except NeedsPairedLink as error:
            assert refusal is not None
            link.admin_result = rejected("needs_pairing", str(error), error.action.value)
            if refusal == protocol.AttAppError.LOCKED:
                self.drop_link(connection, hci.HCI_ErrorCode.AUTHENTICATION_FAILURE_ERROR)
            raise att.ATT_Error(refusal) from error
        except TicketRejected as error:
            self.store.record_event("ticket_rejected", f"{error.reason}: {error.detail}", now)
            link.admin_result = rejected(error.reason, error.detail)
            raise att.ATT_Error(protocol.AttAppError.TICKET_REJECTED) from error
        except ActionNotAllowed as error:
            self.store.record_event("ticket_rejected", f"not_allowed: {error.reason}", now)
            link.admin_result = rejected("not_allowed", error.reason, error.action.value)
            raise att.ATT_Error(protocol.AttAppError.NOT_ALLOWED) from error
        link.admin_result = outcome.result
        if outcome.admit_link:
            link.admitted = True
            return
        await self._apply_bond_changes(outcome, bonded)
        self._state_changed()
        if outcome.drop_all_links or outcome.forget_bonds:
            link.result_read.clear()
            grace = self._drop_after_grace(link, outcome)
            task = asyncio.get_running_loop().create_task(grace)
            self._grace_tasks.add(task)
            task.add_done_callback(self._grace_tasks.discard)

    async def _apply_bond_changes(self, outcome: Any, bonded: list[str]) -> None:
        keystore = self.store.keystore
        if outcome.forget_all_bonds:
            await keystore.delete_all()
        for name in outcome.forget_bonds:
            await keystore.delete(name)
        if outcome.forget_unauthenticated_bonds:
            for name, keys in await keystore.get_all():
                if keys.ltk is None or not keys.ltk.authenticated:
                    await keystore.delete(name)

    async def _drop_after_grace(self, writer: LinkState, outcome: Any) -> None:
        """Let the writer read its receipt (or give up waiting), then drop the links concerned."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(writer.result_read.wait(), RESULT_READ_GRACE)
        await asyncio.sleep(0)  # the read response is queued after the callback returns
        for connection in list(self.device.connections.values()):
            removed = str(connection.peer_address) in outcome.forget_bonds
            if outcome.drop_all_links or removed:
                self.drop_link(
                    connection, hci.HCI_ErrorCode.REMOTE_USER_TERMINATED_CONNECTION_ERROR
                )

    async def read_admin_result(self, connection: Connection) -> bytes:
        # Only the link that wrote the ticket sees its result, so encryption is enough: after
        # enabling the PIN the writer's Just Works bond must still be able to read its receipt.
        if not connection.is_encrypted:
            raise att.ATT_Error(att.ErrorCode.INSUFFICIENT_ENCRYPTION)
        link = self.links.get(connection.handle)
        if link is None or link.admin_result is None:
            return protocol.AdminResult(ok=False, reason="none", detail="no ticket yet").encode()
        value = link.admin_result.encode()
        if len(value) <= connection.att_mtu - 1:
            link.result_read.set()  # read whole in this one response: safe to drop after it
        return value

    async def read_status(self, connection: Connection) -> bytes:
        await self.require_protected(connection)
        return self.evse.status.encode()

    async def write_control(self, connection: Connection, value: bytes) -> None:
        await self.require_protected(connection)
        try:
            command = protocol.ControlCommand.decode(bytes(value))
            self.evse.apply(command)
        except ValueError as error:
            logger.info("control write refused: %s", error)
            raise att.ATT_Error(protocol.AttAppError.BAD_COMMAND) from error

    def _on_status_change(self, status: protocol.ChargerStatus) -> None:
        if self._stopping:
            return
        self._spawn(
            self.device.gatt_server.notify_subscribers(self._status_characteristic, status.encode())
        )
