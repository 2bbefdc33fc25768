"""The charger daemon: a Bumble LE peripheral that pairs only with the PIN and guards the charger.

One `ChargerDaemon` owns the Bluetooth device and assembles its parts: `PairingGuard` (pairing
and each attempt's lifecycle), `LinkSlots` (the connected phones), `Advertiser`, and the GATT
handlers below (open info, tickets, charging). The `StateStore` owns the state; the rules are
core's (DESIGN.md, "Pairing", "Lockout", "PIN epochs").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Collection, Coroutine
from typing import Any

from bumble import att, hci
from bumble.device import Connection, DeviceConfiguration

from chargepin.charger.advertising import Advertiser
from chargepin.charger.evse import ChargingPoint
from chargepin.charger.gatt_service import build_service, check_cccd_value
from chargepin.charger.link_slots import LinkSlots, LinkState, LinkTimings
from chargepin.charger.owner_actions import (
    UNPAIRED_ACTIONS,
    ActionNotAllowed,
    AdminOutcome,
    NeedsPairedLink,
    TicketRejected,
    apply_setting,
    apply_ticket,
    rejected,
)
from chargepin.charger.pairing import PairingGuard
from chargepin.charger.store import StateStore
from chargepin.clock import Clock, SystemClock
from chargepin.core import bond_statement, lockout, presence, protocol
from chargepin.core.attestation import AttestedState, attest
from chargepin.core.events import EventKind
from chargepin.core.limits import CHALLENGE_SIZE
from chargepin.core.links import AccessRefusal, protected_access
from chargepin.core.ocpp_events import EventFacts, Origin
from chargepin.core.policy import PinMode, pin_policy
from chargepin.core.profiles import security_profile
from chargepin.core.tickets import Action
from chargepin.radio.bumble_fixes import ResolvingDevice, guard_pairing, harden_gatt_server
from chargepin.radio.link_addresses import peer_on_air
from chargepin.radio.virtual import HciEndpoints

logger = logging.getLogger(__name__)

PIN_MODE_CODES = {
    PinMode.UNSUPPORTED: protocol.PinModeCode.UNSUPPORTED,
    PinMode.OPTIONAL: protocol.PinModeCode.OPTIONAL,
    PinMode.MANDATORY: protocol.PinModeCode.MANDATORY,
}
ACCESS_ERRORS = {
    AccessRefusal.LOCKED: int(protocol.AttAppError.LOCKED),
    AccessRefusal.NOT_ENCRYPTED: int(att.ErrorCode.INSUFFICIENT_ENCRYPTION),
    AccessRefusal.NOT_PASSKEY_BONDED: int(att.ErrorCode.INSUFFICIENT_AUTHENTICATION),
}
CHALLENGE_LIFETIME = 120.0
POWER_OFF = hci.HCI_ErrorCode.REMOTE_DEVICE_TERMINATED_CONNECTION_DUE_TO_POWER_OFF_ERROR
RESULT_READ_GRACE = 2.0  # seconds the phone gets to read the receipt before links drop


class ChargerDaemon:
    """The Bluetooth side of one charger."""

    def __init__(
        self,
        store: StateStore,
        hci_endpoints: HciEndpoints,
        *,
        clock: Clock | None = None,
        advertising_interval: float = 20.0,
        timings: LinkTimings | None = None,
    ) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.evse = ChargingPoint()
        self.profile = security_profile(store.profile, store.lockout_config)
        self.timings = timings or LinkTimings()
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
        self.device = ResolvingDevice.from_config_with_hci(
            config, hci_endpoints.source, hci_endpoints.sink
        )
        self.device.keystore = store.keystore
        self.links = LinkSlots(self.device, self.timings, self._spawn, self._on_idle_link)
        self.pairing = PairingGuard(
            store, self.profile, self.clock, self.links, self._state_changed
        )
        self.advertiser = Advertiser(
            self.device,
            self.info,
            interval=advertising_interval,
            max_links=lambda: self.timings.max_links,
        )
        guard_pairing(
            self.device, self.pairing.on_request, self.pairing.on_failure, self.pairing.on_complete
        )
        self.device.pairing_config_factory = self.pairing.config
        self.device.add_service(build_service(self.device, self))
        harden_gatt_server(self.device, check_cccd_value)
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
        await self.advertiser.refresh()
        self._schedule_lock_expiry()

    async def stop(self) -> None:
        """Disconnect every phone, stop advertising and release the controller."""
        self._stopping = self.advertiser.stopping = True
        if self._lock_timer is not None:
            self._lock_timer.cancel()
        self.links.stop()
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

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---------------------------------------------------------------- state and advertising

    def info(self) -> protocol.OpenInfo:
        """The open info: identity, PIN class and state, epoch, lockout, PIN fingerprint."""
        identity = self.store.identity
        now = self.clock.now()
        state = self.store.lockout_state
        pin = self.store.pin_state
        flags = protocol.InfoFlag(0)
        if pin.enabled:
            flags |= protocol.InfoFlag.PIN_ENABLED
        if lockout.is_locked(self.profile.lockout, state, now):
            flags |= protocol.InfoFlag.LOCKED
        if self.pairing.handle is not None:
            flags |= protocol.InfoFlag.PAIRING_BUSY
        if self.profile.rotate_on_failure:
            flags |= protocol.InfoFlag.HARDENED
        policy = pin_policy(identity.model, identity.firmware, identity.produced)
        fingerprint = pin.fingerprint(self.store.secret, identity.serial)
        return protocol.OpenInfo(
            serial=identity.serial,
            model=identity.model,
            firmware=str(identity.firmware),
            pin_mode=PIN_MODE_CODES[policy.mode],
            flags=flags,
            epoch=pin.epoch,
            retry_after=int(-(-lockout.retry_after(self.profile.lockout, state, now) // 1)),
            fingerprint=fingerprint,
            attestation=attest(
                self.store.secret,
                identity.serial,
                AttestedState(pin.epoch, pin.enabled, fingerprint, pin.generation),
            ),
            generation=pin.generation,
        )

    def _state_changed(self) -> None:
        """Advertised flags and epoch follow the state."""
        if not self._stopping:
            self._spawn(self.advertiser.refresh())
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
        link = self.links.opened(connection)
        connection.on(
            connection.EVENT_PAIRING, lambda keys: self.pairing.on_pairing(connection, keys)
        )
        connection.on(
            connection.EVENT_PAIRING_FAILURE,
            lambda reason: self.pairing.on_failure(connection, reason),
        )
        connection.on(
            connection.EVENT_DISCONNECTION, lambda reason: self._on_disconnection(connection, link)
        )
        self._spawn(self.advertiser.refresh())

    def _on_idle_link(self, connection: Connection) -> None:
        self.store.record_event(
            EventKind.LINK_DROPPED, f"{connection.peer_address} idle unencrypted", self.clock.now()
        )

    def _on_disconnection(self, connection: Connection, link: LinkState) -> None:
        self.pairing.on_disconnection(connection, link)
        self.links.closed(connection, link)
        self._spawn(self.advertiser.refresh())

    # ---------------------------------------------------------------- GATT handlers

    def _find_characteristic(self, uuid: str) -> Any:
        for attribute in self.device.gatt_server.attributes:
            if getattr(attribute, "uuid", None) == uuid and hasattr(attribute, "properties"):
                return attribute
        raise LookupError(uuid)

    async def require_protected(self, connection: Connection) -> None:
        """Protected features need an encrypted link; with the PIN on, a passkey bond too."""
        refusal = await self._protection_refusal(connection)
        if refusal is not None:
            if refusal is AccessRefusal.LOCKED:
                self.links.drop(connection, hci.HCI_ErrorCode.AUTHENTICATION_FAILURE_ERROR)
            raise att.ATT_Error(ACCESS_ERRORS[refusal])

    async def _protection_refusal(self, connection: Connection) -> AccessRefusal | None:
        """Why this link may not use protected features now (core.links), or None."""
        link = self.links.by_handle.get(connection.handle)
        keys = None
        if connection.is_encrypted:
            keys = await self.store.keystore.get(str(connection.peer_address))
        return protected_access(
            self.profile,
            self.store.lockout_state,
            self.clock.now(),
            admitted=link is not None and link.attempt.admitted,
            encrypted=connection.is_encrypted,
            pin_enabled=self.store.pin_enabled,
            passkey_bond=keys is not None and keys.ltk is not None and keys.ltk.authenticated,
        )

    def read_info(self, connection: Connection) -> bytes:
        return self.info().encode()

    @staticmethod
    def new_challenge() -> bytes:
        """A fresh single-use challenge for a ticket (a link, GATT or OCPP, keeps its own)."""
        return secrets.token_bytes(CHALLENGE_SIZE)

    def read_challenge(self, connection: Connection) -> bytes:
        link = self.links.of(connection)
        link.challenge = self.new_challenge()
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
        link = self.links.of(connection)
        now = self.clock.now()
        challenge = self._take_challenge(link, now)
        if len(value) > protocol.MAX_TICKET_SIZE:
            link.admin_result = rejected("malformed", f"ticket is {len(value)} octets, too long")
            raise att.ATT_Error(att.ErrorCode.INVALID_ATTRIBUTE_LENGTH)
        only = None if refusal is None else UNPAIRED_ACTIONS
        try:
            outcome = await self.apply_owner_ticket(
                bytes(value), challenge, now, Origin.BLE, str(connection.peer_address), only
            )
        except NeedsPairedLink as error:
            assert refusal is not None
            link.admin_result = rejected("needs_pairing", str(error), error.action.value)
            if refusal is AccessRefusal.LOCKED:
                self.links.drop(connection, hci.HCI_ErrorCode.AUTHENTICATION_FAILURE_ERROR)
            raise att.ATT_Error(ACCESS_ERRORS[refusal]) from error
        except TicketRejected as error:
            link.admin_result = rejected(error.reason, error.detail)
            raise att.ATT_Error(protocol.AttAppError.TICKET_REJECTED) from error
        except ActionNotAllowed as error:
            link.admin_result = rejected("not_allowed", error.reason, error.action.value)
            raise att.ATT_Error(protocol.AttAppError.NOT_ALLOWED) from error
        link.admin_result = outcome.result
        if outcome.admit_link:
            self.pairing.admit(connection, link)
            return
        if outcome.drop_all_links or outcome.forget_bonds:
            link.result_read.clear()
            grace = self._drop_after_grace(link, outcome)
            task = asyncio.get_running_loop().create_task(grace)
            self._grace_tasks.add(task)
            task.add_done_callback(self._grace_tasks.discard)

    async def apply_owner_ticket(
        self,
        blob: bytes,
        challenge: bytes | None,
        now: float,
        origin: Origin,
        writer: str | None,
        only: Collection[Action] | None = None,
    ) -> AdminOutcome:
        """Apply an owner's ticket, whichever way it came (GATT admin point, OCPP DataTransfer).

        One code path: owner_actions.apply_ticket decides, and its state change, its events and
        the bonds it forgets commit in one transaction. A refusal is logged (and reported to the
        CSMS when it is a replay or a malformed ticket) and raised again for the caller to show.
        Dropping the links concerned is the caller's: the GATT writer first reads its receipt.
        """
        bonded = [name for name, _ in await self.store.keystore.get_all()]
        try:
            with self.store.transaction():
                outcome = apply_ticket(self.store, blob, challenge, now, bonded, only, origin)
                # SqliteKeyStore's coroutines never suspend: nothing else runs in this transaction.
                await self._apply_bond_changes(outcome)
        except TicketRejected as error:
            self.store.record_event(
                EventKind.TICKET_REJECTED,
                f"{error.reason}: {error.detail}",
                now,
                EventFacts(origin=origin, phone=writer, reason=error.reason),
            )
            raise
        except ActionNotAllowed as error:
            self.store.record_event(
                EventKind.TICKET_REJECTED,
                f"not_allowed: {error.reason}",
                now,
                EventFacts(origin=origin, phone=writer, reason="not_allowed"),
            )
            raise
        if not outcome.admit_link:
            self._state_changed()
        return outcome

    async def apply_owner_setting(
        self, action: Action, args: dict[str, str], now: float
    ) -> AdminOutcome:
        """Apply an owner action that came as an OCPP setting (SetVariables on BluetoothPin),
        with the ticket rules and the same consequences for the links as a ticket's."""
        bonded = [name for name, _ in await self.store.keystore.get_all()]
        with self.store.transaction():
            outcome = apply_setting(self.store, action, args, now, bonded, Origin.OCPP)
            # SqliteKeyStore's coroutines never suspend: nothing else runs in this transaction.
            await self._apply_bond_changes(outcome)
        self._state_changed()
        self.drop_links_now(outcome)
        return outcome

    def drop_links_now(self, outcome: AdminOutcome) -> None:
        """Drop the links an applied ticket concerns (no writer waits for a receipt on air)."""
        for connection in list(self.device.connections.values()):
            removed = str(connection.peer_address) in outcome.forget_bonds
            if outcome.drop_all_links or removed:
                self.links.drop(
                    connection, hci.HCI_ErrorCode.REMOTE_USER_TERMINATED_CONNECTION_ERROR
                )

    async def _apply_bond_changes(self, outcome: AdminOutcome) -> None:
        keystore = self.store.keystore
        if outcome.forget_all_bonds:
            await keystore.delete_all()
        for name in outcome.forget_bonds:
            await keystore.delete(name)
        if outcome.forget_unauthenticated_bonds:
            for name, keys in await keystore.get_all():
                if keys.ltk is None or not keys.ltk.authenticated:
                    await keystore.delete(name)

    async def _drop_after_grace(self, writer: LinkState, outcome: AdminOutcome) -> None:
        """Let the writer read its receipt (or give up waiting), then drop the links concerned."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(writer.result_read.wait(), RESULT_READ_GRACE)
        await asyncio.sleep(0)  # the read response is queued after the callback returns
        self.drop_links_now(outcome)

    async def read_admin_result(self, connection: Connection) -> bytes:
        # Only the link that wrote the ticket sees its result, so encryption is enough: after
        # enabling the PIN the writer's Just Works bond must still be able to read its receipt.
        if not connection.is_encrypted:
            raise att.ATT_Error(att.ErrorCode.INSUFFICIENT_ENCRYPTION)
        link = self.links.by_handle.get(connection.handle)
        if link is None or link.admin_result is None:
            return protocol.AdminResult(ok=False, reason="none", detail="no ticket yet").encode()
        value = link.admin_result.encode()
        if len(value) <= connection.att_mtu - 1:
            link.result_read.set()  # read whole in this one response: safe to drop after it
        return value

    async def read_bond(self, connection: Connection) -> bytes:
        """The charger's statement that it holds a bond with this link's phone (issue 9).

        Only on an encrypted link with a stored bond for the peer's identity address, and about
        that address and bond as stored: nobody can make the charger vouch for a phone it has
        not bonded. The sequence is the pairings counted so far (core.bond_statement). Not
        gated by the lockout: it changes nothing and tells the phone only what it is.
        """
        if not connection.is_encrypted:
            raise att.ATT_Error(att.ErrorCode.INSUFFICIENT_ENCRYPTION)
        address = str(connection.peer_address)
        keys = await self.store.keystore.get(address)
        if keys is None or keys.ltk is None:
            raise att.ATT_Error(att.ErrorCode.INSUFFICIENT_AUTHENTICATION)
        secret, serial = self.store.secret, self.store.identity.serial
        phone = bond_statement.BondedPhone(
            address,
            self.store.counters()[EventKind.PAIRING_OK],
            bond_statement.bond_id(secret, serial, bytes(keys.ltk.value)),
        )
        return bond_statement.make(secret, serial, phone)

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

    def write_presence(self, connection: Connection, value: bytes) -> None:
        """Prove this charger is who it says, to the phone on this link, on the fleet's nonce.

        Open to any link (the phone must check before it pairs); the proof is kept for this
        link only and binds the address this link's phone uses on the air (core.presence), so
        no other link can read it or use it. The MAC costs microseconds: no throttle needed.
        """
        link = self.links.of(connection)
        if len(value) != presence.NONCE_SIZE:
            link.presence = None
            raise att.ATT_Error(att.ErrorCode.INVALID_ATTRIBUTE_LENGTH)
        identity = self.store.identity
        pin = self.store.pin_state
        state = AttestedState(
            pin.epoch,
            pin.enabled,
            pin.fingerprint(self.store.secret, identity.serial),
            pin.generation,
        )
        proof = presence.prove(
            self.store.secret, identity.serial, bytes(value), peer_on_air(connection), state
        )
        link.presence = proof.encode()

    def read_presence(self, connection: Connection) -> bytes:
        """This link's proof for the nonce it wrote last (BAD_COMMAND before any nonce)."""
        link = self.links.of(connection)
        if link.presence is None:
            raise att.ATT_Error(protocol.AttAppError.BAD_COMMAND)
        return link.presence

    def _on_status_change(self, status: protocol.ChargerStatus) -> None:
        if self._stopping:
            return
        self._spawn(
            self.device.gatt_server.notify_subscribers(self._status_characteristic, status.encode())
        )
