"""The phone's Bluetooth side: find a charger, pair with its PIN or reconnect with the bond.

`Phone` is a Bumble LE central with its own bond store; `ChargerLink` is one connected charger.
Every failure surfaces as a `PhoneError` subclass the app can act on (phone/errors.py): a wrong
PIN carries the charger's epoch after the failure, a lockout its retry-after time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bumble import att, gatt, hci
from bumble.core import UUID, AdvertisingData, ProtocolError
from bumble.device import Advertisement, Connection, Device, DeviceConfiguration, Peer
from bumble.pairing import PairingConfig, PairingDelegate

from chargepin.core import protocol, smp
from chargepin.core.attempts import Refusal
from chargepin.core.pin import Pin
from chargepin.core.presence import PresenceInvalid, PresenceProof
from chargepin.core.protocol import AdminResult, ChargerStatus, ControlCommand, OpenInfo
from chargepin.phone.errors import (
    AccessDenied,
    AdminRefused,
    ChargerBusy,
    ChargerLocked,
    ChargerNotFound,
    ChargerTimeout,
    CommandRefused,
    LinkLost,
    NotThisCharger,
    PairingRefused,
    PhoneError,
    PinNeeded,
    WrongPin,
)
from chargepin.phone.gatt_cache import HASH_SIZE, CachedCharacteristic, GattCache, GattCacheStore
from chargepin.phone.identity import PhoneIdentity
from chargepin.radio.keystore import SqliteKeyStore
from chargepin.radio.virtual import HciEndpoints

logger = logging.getLogger(__name__)

PinSource = Pin | str | Callable[[OpenInfo], Awaitable[Pin | str | None]] | None
AdmitSource = Callable[[bytes], Awaitable[bytes]] | None
"""Where an ADMIT_PAIRING ticket comes from, given the charger's challenge (the fleet)."""
VouchedPin = Callable[["ChargerLink"], Awaitable[Pin]] | None
"""The app's pairing path: the PIN for this link, only after the device on it proved it is the
charger (phone/presence.py); it raises instead of answering for an impostor."""


@dataclass(frozen=True)
class FoundCharger:
    """A charger seen advertising."""

    address: str
    serial: str
    flags: protocol.InfoFlag
    epoch: int

    @property
    def pin_enabled(self) -> bool:
        return protocol.InfoFlag.PIN_ENABLED in self.flags

    @property
    def locked(self) -> bool:
        return protocol.InfoFlag.LOCKED in self.flags


def parse_advertisement(advertisement: Advertisement) -> FoundCharger | None:
    """The chargepin payload of an advertisement, or None for anything else."""
    raw = advertisement.data.get(AdvertisingData.MANUFACTURER_SPECIFIC_DATA, raw=True)
    if not isinstance(raw, bytes) or len(raw) < 2:
        return None
    if int.from_bytes(raw[:2], "little") != protocol.COMPANY_ID:
        return None
    try:
        payload = protocol.AdvertPayload.decode(raw[2:])
    except protocol.ProtocolError:
        return None
    return FoundCharger(str(advertisement.address), payload.serial, payload.flags, payload.epoch)


class _Keyboard(PairingDelegate):
    """KeyboardOnly: the user types the PIN the charger 'displays' (passkey entry)."""

    def __init__(self, pin: Pin | None) -> None:
        super().__init__(io_capability=PairingDelegate.IoCapability.KEYBOARD_INPUT_ONLY)
        self._pin = pin

    async def get_number(self) -> int | None:
        return None if self._pin is None else self._pin.passkey


async def _resolve_pin(source: PinSource, info: OpenInfo) -> Pin | None:
    if source is None:
        return None
    if isinstance(source, Pin):
        return source
    if isinstance(source, str):
        return Pin.parse(source)
    value = await source(info)
    if value is None or isinstance(value, Pin):
        return value
    return Pin.parse(value)


class ChargerLink:
    """One connected, secured charger."""

    def __init__(
        self, connection: Connection, peer: Peer, info: OpenInfo, chars: dict[str, Any]
    ) -> None:
        self.connection = connection
        self.peer = peer
        self.info = info
        self.paired_now = False
        self._chars = chars

    @property
    def address(self) -> str:
        return str(self.connection.peer_address)

    def _char(self, uuid: str) -> Any:
        return self._chars[uuid]

    async def _read(self, uuid: str) -> bytes:
        with _gatt_errors():
            return bytes(await self._char(uuid).read_value())

    async def _write(self, uuid: str, value: bytes) -> None:
        with _gatt_errors():
            await self._char(uuid).write_value(value, with_response=True)

    async def read_info(self) -> OpenInfo:
        self.info = OpenInfo.decode(await self._read(protocol.INFO_UUID))
        return self.info

    async def status(self) -> ChargerStatus:
        return ChargerStatus.decode(await self._read(protocol.STATUS_UUID))

    async def control(self, command: ControlCommand) -> ChargerStatus:
        await self._write(protocol.CONTROL_UUID, command.encode())
        return await self.status()

    async def start_charging(self) -> ChargerStatus:
        return await self.control(ControlCommand(protocol.ControlOp.START))

    async def stop_charging(self) -> ChargerStatus:
        return await self.control(ControlCommand(protocol.ControlOp.STOP))

    async def set_current_limit(self, amps: int) -> ChargerStatus:
        return await self.control(ControlCommand(protocol.ControlOp.SET_CURRENT_LIMIT, amps))

    async def subscribe_status(self, listener: Callable[[ChargerStatus], None]) -> None:
        """Status notifications (subscriptions are per link: call again after a reconnect)."""

        def on_value(value: bytes) -> None:
            listener(ChargerStatus.decode(bytes(value)))

        with _gatt_errors():
            await self.peer.subscribe(self._char(protocol.STATUS_UUID), on_value)

    async def read_bond_statement(self) -> bytes:
        """The charger's MACed statement of the bond it holds with this phone, to relay to the
        fleet as read: only the fleet can verify it (core.bond_statement)."""
        return await self._read(protocol.BOND_UUID)

    async def read_challenge(self) -> bytes:
        """A fresh single-use challenge to bind an owner ticket to this charger and moment."""
        return await self._read(protocol.CHALLENGE_UUID)

    async def submit_ticket(self, ticket: bytes) -> AdminResult:
        """Write a sealed ticket and return the charger's result (with its receipt)."""
        try:
            with _gatt_errors(refusals=ADMIN_REFUSALS):
                await self._char(protocol.ADMIN_UUID).write_value(ticket, with_response=True)
        except _Refused:
            pass  # the reason is in the admin result
        result = AdminResult.decode(await self._read(protocol.ADMIN_RESULT_UUID))
        if not result.ok:
            raise AdminRefused(result.reason, result.detail)
        return result

    async def admit(self, ticket: bytes) -> None:
        """Write a member's ADMIT_PAIRING ticket on this link, not paired yet: the charger then
        lets it pair while new pairings are locked out (the result is not readable before the
        link is encrypted: the write's answer is the result)."""
        try:
            with _gatt_errors(refusals=ADMIN_REFUSALS):
                await self._char(protocol.ADMIN_UUID).write_value(ticket, with_response=True)
        except _Refused as error:
            raise AdminRefused(
                "admission_refused",
                "the charger did not take the admission ticket (expired or not for this "
                "charger); connect again",
            ) from error

    async def prove_presence(self, nonce: bytes) -> PresenceProof:
        """Write the fleet's nonce and read back the device's proof that it is the charger it
        advertises (core.presence); NotThisCharger when it has none or answers garbage."""
        serial = self.info.serial
        if protocol.PRESENCE_UUID not in self._chars:
            raise NotThisCharger(serial, "it has no presence characteristic")
        try:
            await self._write(protocol.PRESENCE_UUID, nonce)
            return PresenceProof.decode(await self._read(protocol.PRESENCE_UUID))
        except LinkLost:
            raise  # the link went, not the proof: connect again
        except (PresenceInvalid, PhoneError) as error:  # an ATT error, garbage
            raise NotThisCharger(serial, str(error)) from error

    async def disconnect(self) -> None:
        await _hang_up(self.connection, 0.0)

    async def wait_closed(self, timeout: float) -> bool:
        """True once the charger ended this link (it does after enabling the PIN, say)."""
        return await wait_disconnected(self.connection, timeout)


class _Refused(Exception):
    """An ATT error the caller reads the details of elsewhere."""


ADMIN_REFUSALS = (protocol.AttAppError.TICKET_REJECTED, protocol.AttAppError.NOT_ALLOWED)


@contextlib.contextmanager
def _gatt_errors(refusals: tuple[int, ...] = ()) -> Iterator[None]:
    """ATT errors and a link lost mid-request as PhoneErrors the app can act on.

    Bumble cancels a pending request's future when the link drops; that CancelledError is not
    a cancellation of our task (unless the task itself is being cancelled), so it becomes
    LinkLost instead of silently unwinding the caller.
    """
    try:
        yield
    except att.ATT_Error as error:
        if error.error_code in refusals:
            raise _Refused from error
        raise _att_failure(error) from error
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        raise LinkLost() from None


async def wait_disconnected(connection: Connection, timeout: float) -> bool:
    """True once `connection` is gone, waiting at most `timeout` seconds for it to end."""
    if connection.handle not in connection.device.connections:
        return True
    gone = asyncio.Event()
    connection.once(connection.EVENT_DISCONNECTION, lambda *_: gone.set())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(gone.wait(), timeout)
    return gone.is_set()


async def _hang_up(connection: Connection, wait_for_peer: float) -> None:
    if await wait_disconnected(connection, wait_for_peer):
        return
    with contextlib.suppress(Exception):  # raced with the charger's own disconnect
        await asyncio.wait_for(connection.disconnect(), 2.0)


async def _read_multiple(peer: Peer, handles: tuple[int, ...]) -> list[bytes]:
    """Several values in one round trip: Read Multiple Variable Length (Vol 3 Part F 3.4.4.11)."""
    response = await peer.gatt_client.send_request(
        att.ATT_Read_Multiple_Variable_Request(set_of_handles=list(handles))
    )
    if response is None:
        raise TimeoutError("no answer to Read Multiple Variable")
    if response.op_code == att.Opcode.ATT_ERROR_RESPONSE:
        raise att.ATT_Error(error_code=response.error_code, message=response)
    values = [bytes(value) for length, value in response.length_value_tuple_list]
    lengths = [length for length, _value in response.length_value_tuple_list]
    if len(values) != len(handles) or lengths != [len(value) for value in values]:
        raise protocol.ProtocolError("Read Multiple Variable answer truncated or incomplete")
    return values


async def _read_database_hash(peer: Peer) -> tuple[bytes | None, int]:
    """The Database Hash and its handle, in one Read By Type request (Vol 3 Part G 4.8.2)."""
    response = await peer.gatt_client.send_request(
        att.ATT_Read_By_Type_Request(
            starting_handle=0x0001,
            ending_handle=0xFFFF,
            attribute_type=gatt.GATT_DATABASE_HASH_CHARACTERISTIC,
        )
    )
    if response is None or response.op_code == att.Opcode.ATT_ERROR_RESPONSE:
        return None, 0
    for handle, value in response.attributes:
        if len(value) == HASH_SIZE:
            return bytes(value), int(handle)
    return None, 0


def _att_failure(error: att.ATT_Error) -> PhoneError:
    code = error.error_code
    if code == protocol.AttAppError.LOCKED:
        return ChargerLocked(0.0)
    if code in (att.ErrorCode.INSUFFICIENT_ENCRYPTION, att.ErrorCode.INSUFFICIENT_AUTHENTICATION):
        return AccessDenied(
            "the charger needs this phone paired with its PIN first; run pair again"
        )
    if code == protocol.AttAppError.BAD_COMMAND:
        return CommandRefused("the charger refused the command (value out of range or not now)")
    return PhoneError(f"charger answered ATT error 0x{code:02X} ({error.error_name})")


class Phone:
    """A phone's Bluetooth LE central with its bond store."""

    def __init__(
        self,
        hci_endpoints: HciEndpoints,
        bonds: SqliteKeyStore,
        *,
        identity: PhoneIdentity,
        pairing_timeout: float = 30.0,
        scan_timeout: float = 5.0,
        setup_timeout: float = 5.0,
        privacy: bool = False,
    ) -> None:
        self.bonds = bonds
        self.pairing_timeout = pairing_timeout
        self.scan_timeout = scan_timeout
        self.setup_timeout = setup_timeout
        config = DeviceConfiguration(
            name=identity.name,
            address=hci.Address(identity.address),
            irk=identity.irk,
            identity_address_type=hci.Address.RANDOM_DEVICE_ADDRESS,
            # Phones connect from resolvable private addresses; the charger resolves them to
            # our identity address with the IRK we hand over when pairing (Vol 3 Part C 10.7).
            le_privacy_enabled=privacy,
        )
        self.device = Device.from_config_with_hci(config, hci_endpoints.source, hci_endpoints.sink)
        self.device.keystore = bonds
        self.gatt_cache = GattCacheStore(bonds.connection)
        self._pin: Pin | None = None
        self.device.pairing_config_factory = lambda _connection: PairingConfig(
            sc=True,
            mitm=True,
            bonding=True,
            delegate=_Keyboard(self._pin),
            identity_address_type=PairingConfig.AddressType.RANDOM,
        )

    async def start(self) -> None:
        await self.device.power_on()

    async def stop(self) -> None:
        for connection in list(self.device.connections.values()):
            with contextlib.suppress(Exception):
                await connection.disconnect()
        with contextlib.suppress(Exception):
            await self.device.power_off()

    async def __aenter__(self) -> Phone:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    # ---------------------------------------------------------------- discovery

    async def scan(
        self,
        duration: float,
        until: Callable[[FoundCharger], bool] | None = None,
    ) -> list[FoundCharger]:
        """Chargers heard within `duration` seconds (stops early once `until` matches one)."""
        found: dict[str, FoundCharger] = {}
        done = asyncio.Event()

        def on_advertisement(advertisement: Advertisement) -> None:
            charger = parse_advertisement(advertisement)
            if charger is None:
                return
            found[charger.address] = charger
            if until is not None and until(charger):
                done.set()

        self.device.on(self.device.EVENT_ADVERTISEMENT, on_advertisement)
        try:
            await self.device.start_scanning(active=False, scan_interval=20, scan_window=20)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(done.wait(), duration)
        finally:
            self.device.remove_listener(self.device.EVENT_ADVERTISEMENT, on_advertisement)
            await self.device.stop_scanning()
        return list(found.values())

    async def find(self, target: str) -> FoundCharger:
        """The charger with this address or serial, once it is heard advertising.

        We only connect to a charger we just heard: a connect() to a silent address leaves a
        pending connection in the controller (notes/bumble.md).
        """
        wanted = target.upper()

        def matches(charger: FoundCharger) -> bool:
            return wanted in (charger.address.upper(), charger.serial.upper())

        chargers = await self.scan(self.scan_timeout, until=matches)
        for charger in chargers:
            if matches(charger):
                return charger
        raise ChargerNotFound(
            f"no charger {target} advertising in range after {self.scan_timeout:.0f} s; "
            "is it powered and within a few metres?"
        )

    # ---------------------------------------------------------------- connecting

    async def _open(
        self, charger: FoundCharger, *, discover: bool = True
    ) -> tuple[Connection, Peer, dict[str, Any]]:
        """Connect, exchange the MTU and (unless `discover` is False) discover the service."""
        try:
            connection = await self.device.connect(
                hci.Address(charger.address), own_address_type=hci.OwnAddressType.RANDOM
            )
        except (TimeoutError, hci.HCI_Error) as error:
            raise ChargerTimeout(f"could not connect to {charger.serial}: {error}") from error
        peer = Peer(connection)
        try:
            with _gatt_errors():
                characteristics = await asyncio.wait_for(
                    self._discover(peer, discover), self.setup_timeout
                )
        except TimeoutError as error:
            await self._hang_up(connection)
            raise ChargerTimeout(
                f"connected to {charger.serial} but it did not answer within "
                f"{self.setup_timeout:.0f} s; try again"
            ) from error
        except Exception:
            await self._hang_up(connection)
            raise
        return connection, peer, {str(c.uuid).lower(): c for c in characteristics}

    async def _discover(self, peer: Peer, discover: bool = True) -> list[Any]:
        await peer.request_mtu(protocol.PREFERRED_MTU)
        if not discover:
            return []
        return await self._discover_characteristics(peer)

    async def _discover_characteristics(self, peer: Peer) -> list[Any]:
        services = await peer.discover_services([UUID(protocol.SERVICE_UUID)])
        if not services:
            raise PairingRefused(
                f"{peer.connection.peer_address} has no chargepin service; "
                "is it a chargepin charger?"
            )
        return list(await services[0].discover_characteristics())

    async def _find_and_open(
        self, target: str, *, use_cache: bool = False
    ) -> tuple[FoundCharger, Connection, Peer, dict[str, Any], GattCache | None]:
        """Find the charger advertising and connect; one retry if the link does not come up.

        A connection request that crosses the charger's advertising restart is not seen by
        the charger (real controllers report it as failed to be established, 0x3E); like a
        phone's stack, try once more with a fresh scan.
        """
        for attempt in (1, 2):
            charger = await self.find(target)
            cache = await self._usable_cache(charger) if use_cache else None
            try:
                return (*(charger, *await self._open(charger, discover=cache is None)), cache)
            except (ChargerTimeout, LinkLost):
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _hang_up(self, connection: Connection, wait_for_peer: float = 0.0) -> None:
        """Disconnect, unless the charger already did (or does within `wait_for_peer` s).

        Both sides disconnecting at once leaves the virtual controller without the link and the
        second Disconnect never completes, so a link the charger is about to drop is waited for.
        """
        await _hang_up(connection, wait_for_peer)

    async def read_info(self, target: str) -> OpenInfo:
        """Connect without pairing and read the open info (epoch, lockout, PIN state)."""
        _charger, connection, _peer, chars, _cache = await self._find_and_open(target)
        try:
            return OpenInfo.decode(bytes(await chars[protocol.INFO_UUID].read_value()))
        finally:
            await self._hang_up(connection)

    async def connect(
        self,
        target: str,
        pin: PinSource = None,
        admit: AdmitSource = None,
        *,
        vouched: VouchedPin = None,
    ) -> ChargerLink:
        """Connect and secure: the bond if we have one, else pair with the PIN from `pin`.

        With `admit`, a phone that must pair while the charger is locked out first writes the
        ADMIT_PAIRING ticket `admit(challenge)` gives (a member's, from the fleet service).
        With `vouched` (the app's path) the PIN comes from `vouched(link)`, which answers only
        once the device proved it is the charger; `pin` is then not used.
        """
        charger, connection, peer, chars, cache = await self._find_and_open(target, use_cache=True)
        try:
            link = None
            if cache is not None:
                link = await self._reconnect_cached(charger, connection, peer, cache, admit)
            if link is None:
                if not chars:
                    chars = await self._discover_in_time(charger, peer)
                info = OpenInfo.decode(bytes(await chars[protocol.INFO_UUID].read_value()))
                link = ChargerLink(connection, peer, info, chars)
                await self._secure(link, charger, pin, admit, vouched)
                await self._remember_database(charger, link)
        except BaseException:
            await self._hang_up(connection)
            raise
        return link

    # ---------------------------------------------------------------- the GATT cache

    async def _usable_cache(self, charger: FoundCharger) -> GattCache | None:
        """The cached database of a charger we hold a bond with (else None: no bond, no cache)."""
        if await self.bonds.get(charger.address) is None:
            return None
        return self.gatt_cache.get(charger.address)

    async def _discover_in_time(self, charger: FoundCharger, peer: Peer) -> dict[str, Any]:
        try:
            with _gatt_errors():
                found = await asyncio.wait_for(
                    self._discover_characteristics(peer), self.setup_timeout
                )
        except TimeoutError as error:
            raise ChargerTimeout(
                f"connected to {charger.serial} but it did not answer within "
                f"{self.setup_timeout:.0f} s; try again"
            ) from error
        return {str(c.uuid).lower(): c for c in found}

    async def _reconnect_cached(
        self,
        charger: FoundCharger,
        connection: Connection,
        peer: Peer,
        cache: GattCache,
        admit: AdmitSource,
    ) -> ChargerLink | None:
        """Encrypt with the bond, then read the Database Hash and the open info through the
        cached handles in one round trip; the link on the cached database, or None when the
        cache does not hold (the caller discovers, and pairs if the bond was lost).

        The handles are used only on a link encrypted with our bond of this charger (a
        stranger at its address cannot encrypt), and trusted only once the hash read through
        them is the cached one (Core spec Vol 3 Part G 2.5.2.1).
        """
        try:
            await self._encrypt(connection, charger)
        except hci.HCI_Error as error:
            if error.error_code != hci.HCI_ErrorCode.PIN_OR_KEY_MISSING_ERROR:
                raise PairingRefused(f"encryption with the bond failed: {error}") from error
            logger.info("charger %s lost our bond; pairing again", charger.serial)
            await self.bonds.delete(charger.address)
            self.gatt_cache.delete(charger.address)
            return None
        try:
            info_handle = cache.handle_of(protocol.INFO_UUID)
            with _gatt_errors():
                values = await asyncio.wait_for(
                    _read_multiple(peer, (cache.hash_handle, info_handle)), self.setup_timeout
                )
            if values[0] != cache.database_hash:
                raise protocol.ProtocolError("the charger's database hash changed")
            info = OpenInfo.decode(values[1])
        except LinkLost:
            raise
        except (PhoneError, protocol.ProtocolError, KeyError, TimeoutError) as error:
            logger.info("GATT cache of %s not used (%s); discovering", charger.serial, error)
            self.gatt_cache.delete(charger.address)
            return None
        link = ChargerLink(connection, peer, info, cache.proxies(peer.gatt_client))
        if info.locked and admit is not None:
            await link.admit(await admit(await link.read_challenge()))
        return link

    async def _remember_database(self, charger: FoundCharger, link: ChargerLink) -> None:
        """Cache the database of a charger we now hold a bond with, under its current hash.

        Best effort: the link is secured already, and a cache we could not build (the charger
        hung up, a timeout) only means discovering again next time."""
        if not link.connection.is_encrypted or await self.bonds.get(charger.address) is None:
            return
        try:
            await asyncio.wait_for(self._read_database(charger, link), self.setup_timeout)
        except (PhoneError, TimeoutError) as error:
            logger.info("GATT cache of %s not written (%s)", charger.serial, error)

    async def _read_database(self, charger: FoundCharger, link: ChargerLink) -> None:
        with _gatt_errors():
            database_hash, hash_handle = await _read_database_hash(link.peer)
            characteristics = []
            for uuid, proxy in sorted(link._chars.items()):
                cccd = None
                if proxy.properties & (
                    gatt.Characteristic.Properties.NOTIFY | gatt.Characteristic.Properties.INDICATE
                ):
                    if not proxy.descriptors_discovered:
                        await proxy.discover_descriptors()
                    descriptor = proxy.get_descriptor(
                        gatt.GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR
                    )
                    cccd = None if descriptor is None else descriptor.handle
                characteristics.append(
                    CachedCharacteristic(
                        uuid, proxy.handle, proxy.end_group_handle, int(proxy.properties), cccd
                    )
                )
        if database_hash is None:
            return  # a charger without a Database Hash is discovered on every connection
        self.gatt_cache.put(
            charger.address, GattCache(database_hash, hash_handle, tuple(characteristics))
        )

    async def _secure(
        self,
        link: ChargerLink,
        charger: FoundCharger,
        pin: PinSource,
        admit: AdmitSource,
        vouched: VouchedPin = None,
    ) -> None:
        connection = link.connection
        # Locked: be admitted first (a classic charger's lock shuts out bonded phones too).
        admission = admit if link.info.locked else None
        if await self.bonds.get(charger.address) is not None:
            try:
                if not connection.is_encrypted:  # the cached path encrypted already
                    await self._encrypt(connection, charger)
                if admission is not None:
                    await link.admit(await admission(await link.read_challenge()))
                return
            except hci.HCI_Error as error:
                if error.error_code != hci.HCI_ErrorCode.PIN_OR_KEY_MISSING_ERROR:
                    raise PairingRefused(f"encryption with the bond failed: {error}") from error
                # The charger forgot us (the owner removed this phone, or a reset): pair again.
                logger.info("charger %s lost our bond; pairing again", charger.serial)
                await self.bonds.delete(charger.address)
                self.gatt_cache.delete(charger.address)
        if admission is not None:
            await link.admit(await admission(await link.read_challenge()))
        await self._pair(link, charger, pin, vouched)

    async def _encrypt(self, connection: Connection, charger: FoundCharger) -> None:
        """Encrypt with our bond. A charger holding another key for us (a pairing it never
        stored, a restored backup) drops the link on the MIC failure: Bumble then cancels the
        request, which must reach the app as LinkLost saying what to do, not as a cancellation
        of its own task."""
        try:
            await asyncio.wait_for(connection.encrypt(), self.pairing_timeout)
        except TimeoutError as error:
            raise ChargerTimeout(
                f"encryption with {charger.serial} did not finish in {self.pairing_timeout:.0f} s"
            ) from error
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            raise LinkLost(
                f"charger {charger.serial} dropped the link when we used our bond: it holds "
                "another key for this phone; forget the charger on this phone and pair again "
                "with the PIN"
            ) from None

    async def _pair(
        self,
        link: ChargerLink,
        charger: FoundCharger,
        source: PinSource,
        vouched: VouchedPin = None,
    ) -> None:
        info = link.info
        self._pin = None
        if info.pin_enabled:
            if vouched is not None:
                self._pin = await vouched(link)
            else:
                self._pin = await _resolve_pin(source, info)
            if self._pin is None:
                raise PinNeeded(info.serial)
            if self._pin.passkey == 0:
                raise PairingRefused("000000 is never a charger PIN; check Charger Info")
        try:
            await asyncio.wait_for(link.connection.pair(), self.pairing_timeout)
        except TimeoutError as error:
            raise ChargerTimeout(
                f"pairing with {info.serial} did not finish in {self.pairing_timeout:.0f} s"
            ) from error
        except ProtocolError as error:
            await self._hang_up(link.connection, wait_for_peer=1.0)
            raise await self._pairing_failure(error, charger) from error
        finally:
            self._pin = None
        link.paired_now = True

    async def _pairing_failure(self, error: ProtocolError, charger: FoundCharger) -> PhoneError:
        code = int(error.error_code or 0)
        refusal = smp.refusal_of(code)
        if refusal is Refusal.BUSY:
            return ChargerBusy()
        if refusal is Refusal.NEEDS_PASSKEY:
            return PairingRefused(
                "the charger accepts only LE Secure Connections with PIN entry; "
                "this phone offered Just Works or legacy pairing"
            )
        if code in smp.WRONG_PIN_CODES or refusal is Refusal.LOCKED:
            # The charger dropped the link; its epoch and lockout are on the open info.
            after = await self.read_info(charger.address)
            if refusal is Refusal.LOCKED:
                return ChargerLocked(float(after.retry_after))
            return WrongPin(after.epoch, float(after.retry_after) if after.locked else 0.0, after)
        return PairingRefused(f"pairing failed: {smp.describe(code)}")

    async def forget(self, target_address: str) -> bool:
        """Delete our bond with a charger (what 'Forget this device' does on a phone)."""
        existed = await self.bonds.get(target_address.upper()) is not None
        await self.bonds.delete(target_address.upper())
        self.gatt_cache.delete(target_address)
        return existed
