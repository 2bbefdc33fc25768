"""The charger's side of pairing: the PIN as passkey, the gate, and each attempt's lifecycle.

Bumble's SMP callbacks become events of core.pairing_attempt's state machine; this module
carries out the actions it returns, in order, inside the callback: a failed attempt is counted
and on disk before the Pairing Failed PDU leaves (DESIGN.md, "Pairing", "Lockout").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bumble import hci, smp
from bumble.device import Connection
from bumble.keys import PairingKeys
from bumble.pairing import PairingConfig, PairingDelegate

from chargepin.charger.link_slots import LinkSlots, LinkState
from chargepin.charger.store import StateStore
from chargepin.clock import Clock
from chargepin.core import attempts, durability, pairing_attempt
from chargepin.core.attempts import AttemptKind, PairingRequest, Refusal
from chargepin.core.events import EventKind
from chargepin.core.ocpp_events import EventFacts
from chargepin.core.pairing_attempt import (
    AttemptEvent,
    Count,
    Drop,
    DropReason,
    LogRefusal,
    LogSuccess,
    Refuse,
    Release,
    Serve,
)
from chargepin.core.profiles import SecurityProfile
from chargepin.core.smp import REFUSAL_CODES, attempt_kind

KEYBOARD_CAPABILITIES = (
    smp.SMP_KEYBOARD_ONLY_IO_CAPABILITY,
    smp.SMP_KEYBOARD_DISPLAY_IO_CAPABILITY,
)
DROP_REASONS = {
    DropReason.FAILED: hci.HCI_ErrorCode.AUTHENTICATION_FAILURE_ERROR,
    DropReason.TIMED_OUT: hci.HCI_ErrorCode.CONNECTION_TIMEOUT_ERROR,
}


class _PasskeyDisplay(PairingDelegate):
    """DisplayOnly: the charger 'shows' its PIN, the phone types it (passkey entry)."""

    def __init__(self, store: StateStore) -> None:
        super().__init__(io_capability=PairingDelegate.IoCapability.DISPLAY_OUTPUT_ONLY)
        self._store = store

    async def generate_passkey(self) -> int:
        return self._store.current_pin().passkey

    async def confirm(self, auto: bool = False) -> bool:
        return False  # Just Works never reaches here while the PIN is on; refuse if it does


def phone_name(connection: Connection) -> str:
    """The phone's address as the security events name it (techInfo `phone`)."""
    return str(connection.peer_address)


class PairingGuard:
    """Serves or refuses pairing requests and accounts for every attempt, one link at a time."""

    def __init__(
        self,
        store: StateStore,
        profile: SecurityProfile,
        clock: Clock,
        links: LinkSlots,
        state_changed: Callable[[], None],
    ) -> None:
        self._store = store
        self._profile = profile
        self._clock = clock
        self._links = links
        self._state_changed = state_changed
        self.handle: int | None = None
        """The link whose pairing runs (one at a time), or None."""

    def config(self, connection: Connection) -> PairingConfig:
        """LE Secure Connections with the PIN as passkey while it is on; bonding always."""
        if self._store.pin_enabled:
            delegate: PairingDelegate = _PasskeyDisplay(self._store)
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

    # ------------------------------------------------------------------ Bumble's callbacks

    def on_request(
        self, connection: Connection, command: smp.SMP_Pairing_Request_Command
    ) -> int | None:
        """Gate one SMP Pairing Request: None serves it, else the SMP reason to refuse with."""
        link = self._links.of(connection)
        refusal = attempts.gate(
            self._profile,
            self._store.lockout_state,
            pin_enabled=self._store.pin_enabled,
            another_pairing_running=self.handle not in (None, connection.handle),
            request=PairingRequest(
                secure_connections=bool(command.auth_req & smp.AuthReq.SC),
                can_enter_passkey=command.io_capability in KEYBOARD_CAPABILITIES,
            ),
            now=self._clock.now(),
            admitted=link.attempt.admitted,
        )
        answer = self.feed(connection, link, pairing_attempt.Requested(refusal))
        return None if answer is None else REFUSAL_CODES[answer]

    def on_failure(self, connection: Connection, reason: int) -> None:
        """A failure: ours about to be sent, or the phone's; the machine counts it once."""
        link = self._links.by_handle.get(connection.handle)
        if link is not None:
            self.feed(connection, link, pairing_attempt.Failed(attempt_kind(reason)))

    def on_complete(self, connection: Connection, authenticated: bool) -> None:
        """The phone's last key arrived (radio.bumble_fixes): the pairing succeeded, before the
        link can be seen to drop."""
        link = self._links.by_handle.get(connection.handle)
        if link is not None:
            self.feed(connection, link, pairing_attempt.Paired(authenticated))

    def on_pairing(self, connection: Connection, keys: PairingKeys) -> None:
        # Bumble's report, after the keys are stored: already fed by on_complete (a second
        # Paired is ignored), kept for a session class without that hook.
        self.on_complete(connection, bool(keys.ltk and keys.ltk.authenticated))

    def on_disconnection(self, connection: Connection, link: LinkState) -> None:
        self.feed(connection, link, pairing_attempt.Disconnected())

    def _on_smp_timeout(self, connection: Connection, link: LinkState) -> None:
        self.feed(connection, link, pairing_attempt.TimedOut())

    def admit(self, connection: Connection, link: LinkState) -> None:
        self.feed(connection, link, pairing_attempt.Admitted())

    # ------------------------------------------------------------------------ the actions

    def feed(self, connection: Connection, link: LinkState, event: AttemptEvent) -> Refusal | None:
        """Step the link's attempt and carry out the actions; the refusal to answer, if any."""
        link.attempt, actions = pairing_attempt.step(link.attempt, event)
        answer: Refusal | None = None
        for action in actions:
            if isinstance(action, Count):
                self._count(action.kind, connection)
            elif isinstance(action, LogRefusal):
                self._store.record_event(
                    EventKind.PAIRING_REFUSED,
                    f"{connection.peer_address} {action.refusal.value}",
                    self._clock.now(),
                )
            elif isinstance(action, Refuse):
                answer = action.refusal
                self._links.drop(connection, hci.HCI_ErrorCode.AUTHENTICATION_FAILURE_ERROR)
            elif isinstance(action, Serve):
                self.handle = connection.handle
                link.smp_timer = asyncio.get_running_loop().call_later(
                    self._links.timings.smp_timeout, self._on_smp_timeout, connection, link
                )
            elif isinstance(action, Release):
                link.stop_smp_timer()
                if self.handle == connection.handle:
                    self.handle = None
            elif isinstance(action, LogSuccess):
                how = "passkey" if action.authenticated else "just-works"
                # Not fsynced (core.durability): a success lost in a power cut is a re-pairing.
                with self._store.transaction(durability.PAIRING_OK):
                    self._store.record_event(
                        EventKind.PAIRING_OK,
                        f"{connection.peer_address} {how}",
                        self._clock.now(),
                        EventFacts(phone=phone_name(connection), with_pin=action.authenticated),
                    )
                # No advertising refresh: a success changes nothing advertised (flags, epoch),
                # and the refresh (info, two HMACs, three reads) ran inside the pairing window.
            elif isinstance(action, Drop):
                self._links.drop(connection, DROP_REASONS[action.reason])
        return answer

    def _count(self, kind: AttemptKind, connection: Connection) -> None:
        """Count the attempt and rotate the PIN if the profile says so: one durable commit.

        This runs synchronously in the SMP handler, before the Pairing Failed PDU is sent, so
        the new lockout state and epoch are on disk before the phone learns the outcome and
        before the event loop can serve the next pairing request.
        """
        now = self._clock.now()
        store = self._store
        detail = f"{connection.peer_address} {kind.value}"
        facts = EventFacts(phone=phone_name(connection), reason=kind.value)
        with store.transaction(durability.FAILED_ATTEMPT):
            pin = store.pin_state
            outcome = attempts.failed_attempt(self._profile, store.lockout_state, pin, kind, now)
            store.record_event(EventKind.PAIRING_FAILED, detail, now, facts)
            store.save_lockout_state(outcome.lockout)
            if outcome.pin != pin:
                store.save_pin_state(outcome.pin)
            if outcome.locked_now:
                duration = round(outcome.retry_after)
                store.record_event(
                    EventKind.LOCKED,
                    f"{outcome.retry_after:.0f} s",
                    now,
                    # A lock comes when the window's failures reach the threshold (then cleared).
                    EventFacts(
                        phone=facts.phone,
                        duration=duration,
                        failures=self._profile.lockout.failures,
                    ),
                )
        self._state_changed()
