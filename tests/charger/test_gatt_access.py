"""Who may read and write what in the charger's GATT table, over the real stack.

docs/PROTOCOL.md access rules: info and challenge are open to anyone in range; status, control,
the status CCCD and the admin points need an encrypted link, and while the PIN is on a bond made
with the PIN (passkey entry). Every attribute answers promptly: a read or write is never left
waiting for Bumble's 30 s GATT timeout.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from bumble import att, gatt

from chargepin.charger.daemon import ChargerDaemon
from chargepin.core import presence, protocol
from chargepin.core.limits import CHALLENGE_SIZE
from chargepin.core.protocol import AdminResult, ChargerStatus, ChargingState, OpenInfo
from chargepin.core.tickets import Action, verify_receipt
from chargepin.lab import raw_gatt
from chargepin.lab.raw_gatt import RawGattClient
from chargepin.lab.testbed import ChargerSpec, Testbed
from chargepin.phone.client import ChargerLink, Phone, wait_disconnected
from chargepin.phone.errors import PinNeeded
from chargepin.radio.link_addresses import self_on_air
from tests.helpers.timing import WITHIN

ANSWER_WITHIN = WITHIN
"""Seconds any attribute gets to answer one read or write: well under the 30 s a client waits
for an answer that never comes (the failures these tests guard against)."""
SERIAL = "CP-0001"
OPTIONAL = ChargerSpec(serial=SERIAL, model="Pulsar Plus", firmware="6.8.0")  # PIN off
"""Optional class: the owner may switch the PIN off and on."""

CCCD = gatt.GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR
READ_NOT_PERMITTED = att.ErrorCode.READ_NOT_PERMITTED
WRITE_NOT_PERMITTED = att.ErrorCode.WRITE_NOT_PERMITTED
NO_ENCRYPTION = att.ErrorCode.INSUFFICIENT_ENCRYPTION
NO_AUTHENTICATION = att.ErrorCode.INSUFFICIENT_AUTHENTICATION


async def connect_unpaired(phone: Phone, serial: str = SERIAL) -> RawGattClient:
    """Connect and discover, nothing more: no pairing, no encryption (what a stranger does)."""
    client = await raw_gatt.connect_unpaired(phone, serial, answer_within=ANSWER_WITHIN)
    assert not client.connection.is_encrypted
    return client


async def client_of(link: ChargerLink) -> RawGattClient:
    return await RawGattClient.discover(link.connection, link.peer, answer_within=ANSWER_WITHIN)


async def pin_paired(bed: Testbed, daemon: ChargerDaemon, name: str = "owner") -> ChargerLink:
    phone = await bed.phone(name)
    link = await phone.connect(SERIAL, pin=str(daemon.store.current_pin()))
    assert link.paired_now
    return link


def expected_reads(client: RawGattClient, paired: bool) -> dict[int, int | None]:
    """Per handle: the ATT error a read must get, None when it must return a value."""
    closed = None if paired else NO_ENCRYPTION
    expected: dict[int, int | None] = dict.fromkeys((a.handle for a in client.attributes), None)
    expected[client.value(protocol.ADMIN_UUID).handle] = READ_NOT_PERMITTED
    expected[client.value(protocol.CONTROL_UUID).handle] = READ_NOT_PERMITTED
    expected[client.value(protocol.ADMIN_RESULT_UUID).handle] = closed
    expected[client.value(protocol.STATUS_UUID).handle] = closed
    expected[client.cccd_of(protocol.STATUS_UUID).handle] = closed
    expected[client.value(protocol.BOND_UUID).handle] = closed
    # Open, but a proof is only there once this link wrote a nonce.
    expected[client.value(protocol.PRESENCE_UUID).handle] = protocol.AttAppError.BAD_COMMAND
    return expected


# ------------------------------------------------------------------------------ strangers


async def test_unpaired_phone_reads_info_and_challenge(bed: Testbed) -> None:
    daemon = await bed.charger(ChargerSpec(serial=SERIAL))
    stranger = await connect_unpaired(await bed.phone("stranger"))
    raw = await stranger.read(stranger.value(protocol.INFO_UUID))
    assert isinstance(raw, bytes)
    info = OpenInfo.decode(raw)
    assert (info.serial, info.pin_enabled, info.epoch) == (SERIAL, True, daemon.store.epoch)
    first = await stranger.read(stranger.value(protocol.CHALLENGE_UUID))
    second = await stranger.read(stranger.value(protocol.CHALLENGE_UUID))
    assert isinstance(first, bytes)
    assert isinstance(second, bytes)
    assert len(first) == len(second) == CHALLENGE_SIZE
    assert first != second


@pytest.mark.parametrize("pin_enabled", [True, False], ids=["pin-on", "pin-off"])
async def test_unpaired_phone_is_refused_everything_protected(
    bed: Testbed, pin_enabled: bool
) -> None:
    """Even with the PIN off, status, control and the admin points need an encrypted link."""
    spec = ChargerSpec(serial=SERIAL) if pin_enabled else OPTIONAL
    daemon = await bed.charger(spec)
    stranger = await connect_unpaired(await bed.phone("stranger"))
    # A genuine ticket bound to the stranger's own challenge is refused all the same.
    challenge = await stranger.read(stranger.value(protocol.CHALLENGE_UUID))
    assert isinstance(challenge, bytes)
    action = Action.CHANGE_PIN if pin_enabled else Action.ENABLE_PIN
    args = {"next_epoch": "1"} if pin_enabled else None
    ticket = bed.authority(daemon).ticket(challenge, action, args)
    epoch = daemon.store.epoch

    assert await stranger.read(stranger.value(protocol.STATUS_UUID)) == NO_ENCRYPTION
    assert await stranger.read(stranger.cccd_of(protocol.STATUS_UUID)) == NO_ENCRYPTION
    assert await stranger.read(stranger.value(protocol.ADMIN_RESULT_UUID)) == NO_ENCRYPTION
    assert await stranger.read(stranger.value(protocol.BOND_UUID)) == NO_ENCRYPTION
    notify_on = b"\x01\x00"
    assert await stranger.write(stranger.cccd_of(protocol.STATUS_UUID), notify_on) == NO_ENCRYPTION
    start = bytes([protocol.ControlOp.START])
    assert await stranger.write(stranger.value(protocol.CONTROL_UUID), start) == NO_ENCRYPTION
    assert await stranger.write(stranger.value(protocol.ADMIN_UUID), ticket) == NO_ENCRYPTION

    assert daemon.evse.status.state is ChargingState.IDLE
    assert (daemon.store.pin_enabled, daemon.store.epoch) == (pin_enabled, epoch)
    assert daemon.store.counters()["ticket_rejected"] == 0
    assert daemon.store.keystore.list_bonds() == []


# ------------------------------------------------------------------------------ every attribute


async def test_every_attribute_answers_a_read_promptly(bed: Testbed) -> None:
    """Paired and unpaired; the write-only admin and control points say READ_NOT_PERMITTED."""
    daemon = await bed.charger(ChargerSpec(serial=SERIAL))
    stranger = await connect_unpaired(await bed.phone("stranger"))
    owner = await client_of(await pin_paired(bed, daemon))
    for client, paired in ((stranger, False), (owner, True)):
        expected = expected_reads(client, paired)
        for attribute in client.attributes:
            answer = await client.read(attribute)
            if expected[attribute.handle] is None:
                assert isinstance(answer, bytes), f"read of {attribute}: 0x{answer:02X}"
            else:
                assert answer == expected[attribute.handle], f"read of {attribute}"
    raw = await owner.read(owner.value(protocol.STATUS_UUID))
    assert isinstance(raw, bytes)
    assert ChargerStatus.decode(raw).state is ChargingState.IDLE


async def test_each_link_reads_only_its_own_presence_proof(bed: Testbed) -> None:
    """Issue 9.8: the proof is kept per link and binds the phone's address on that link, so a
    second link (a fake charger relaying to the real one) neither reads nor reuses it."""
    daemon = await bed.charger(ChargerSpec(serial=SERIAL))
    first = await connect_unpaired(await bed.phone("first"))
    second = await connect_unpaired(await bed.phone("second"))
    nonce = bytes(range(16))
    assert await first.write(first.value(protocol.PRESENCE_UUID), nonce) is None
    assert await second.read(second.value(protocol.PRESENCE_UUID)) == (
        protocol.AttAppError.BAD_COMMAND
    )
    assert await second.write(second.value(protocol.PRESENCE_UUID), nonce) is None
    proofs = []
    for client in (first, second):
        raw = await client.read(client.value(protocol.PRESENCE_UUID))
        assert isinstance(raw, bytes)
        proofs.append(presence.PresenceProof.decode(raw))
    secret, address = daemon.store.secret, self_on_air(first.connection)
    assert presence.verify(secret, SERIAL, nonce, address, proofs[0]).epoch == daemon.store.epoch
    with pytest.raises(presence.PresenceInvalid):  # the other link's proof, same nonce
        presence.verify(secret, SERIAL, nonce, address, proofs[1])
    for size in (0, 15, 17, 512):  # a wrong size clears the link's proof
        answer = await first.write(first.value(protocol.PRESENCE_UUID), bytes(size))
        assert answer == att.ErrorCode.INVALID_ATTRIBUTE_LENGTH
        assert await first.read(first.value(protocol.PRESENCE_UUID)) == (
            protocol.AttAppError.BAD_COMMAND
        )


async def test_every_attribute_answers_a_write_promptly(bed: Testbed) -> None:
    """From a stranger: protected points want encryption, everything else refuses.

    The admin point reads a ticket even on an unpaired link (an ADMIT_PAIRING ticket proves
    itself): two bytes are no ticket, and the answer says so.
    """
    await bed.charger(ChargerSpec(serial=SERIAL))
    stranger = await connect_unpaired(await bed.phone("stranger"))
    admin = stranger.value(protocol.ADMIN_UUID).handle
    presence = stranger.value(protocol.PRESENCE_UUID).handle
    protected = {
        stranger.value(protocol.CONTROL_UUID).handle,
        stranger.cccd_of(protocol.STATUS_UUID).handle,
    }
    service_changed_cccd = stranger.cccd_of(gatt.GATT_SERVICE_CHANGED_CHARACTERISTIC).handle
    for attribute in stranger.attributes:
        answer = await stranger.write(attribute, b"\x00\x00")
        if attribute.handle == service_changed_cccd:
            # Standard GATT lets any client configure Service Changed indications;
            # docs/PROTOCOL.md says every attribute outside our service refuses. Either is prompt.
            assert answer in (None, WRITE_NOT_PERMITTED)
        elif attribute.handle == admin:
            assert answer == protocol.AttAppError.TICKET_REJECTED
        elif attribute.handle == presence:  # open to anyone: two bytes are no nonce
            assert answer == att.ErrorCode.INVALID_ATTRIBUTE_LENGTH
        elif attribute.handle in protected:
            assert answer == NO_ENCRYPTION, f"write to handle {attribute.handle}"
        else:
            assert answer == WRITE_NOT_PERMITTED, f"write to handle {attribute.handle}"


async def test_database_hash_refuses_a_write_promptly(bed: Testbed) -> None:
    """The GATT service's Database Hash (0x2B2A) has a read callback only, so
    freeze_static_attributes skips it and Bumble raises InvalidOperationError inside the
    server on a write: no response, the client waits 30 s (GATT timeout).
    """
    daemon = await bed.charger(ChargerSpec(serial=SERIAL))
    owner = await client_of(await pin_paired(bed, daemon))
    database_hash = owner.value(gatt.GATT_DATABASE_HASH_CHARACTERISTIC)
    before = await owner.read(database_hash)
    try:
        answer: int | str | None = await owner.write(database_hash, b"\x00" * 16)
    except TimeoutError:
        answer = f"no answer within {ANSWER_WITHIN:g} s"
    assert answer == WRITE_NOT_PERMITTED
    assert await owner.read(database_hash) == before


READ_MULTIPLE = [att.ATT_Read_Multiple_Request, att.ATT_Read_Multiple_Variable_Request]


async def read_multiple(
    client: RawGattClient, request_class: type[att.ATT_PDU], uuids: list[str]
) -> Any:
    """One Read Multiple (Variable) Request (Core spec Vol 3 Part F 3.4.4.7, 3.4.4.11)."""
    handles = [client.value(uuid).handle for uuid in uuids]
    request = request_class(set_of_handles=handles)  # type: ignore[call-arg]
    return await asyncio.wait_for(client.peer.gatt_client.send_request(request), ANSWER_WITHIN)


@pytest.mark.parametrize("request_class", READ_MULTIPLE, ids=["fixed", "variable"])
async def test_read_multiple_of_open_attributes_works(
    bed: Testbed, request_class: type[att.ATT_PDU]
) -> None:
    await bed.charger(ChargerSpec(serial=SERIAL))
    stranger = await connect_unpaired(await bed.phone("stranger"))
    response = await read_multiple(
        stranger, request_class, [protocol.CHALLENGE_UUID, protocol.INFO_UUID]
    )
    assert response.op_code != att.Opcode.ATT_ERROR_RESPONSE
    assert SERIAL.encode() in bytes(response)


@pytest.mark.parametrize("request_class", READ_MULTIPLE, ids=["fixed", "variable"])
async def test_read_multiple_with_a_protected_attribute_is_refused_promptly(
    bed: Testbed, request_class: type[att.ATT_PDU]
) -> None:
    """Bumble's Read Multiple (Variable) handlers assume every attribute is world-readable and
    let the ATT_Error of our read callback escape: without gatt_service.harden_server there is
    no response and the client waits 30 s. Any stranger in range could do this.
    """
    await bed.charger(ChargerSpec(serial=SERIAL))
    stranger = await connect_unpaired(await bed.phone("stranger"))
    try:
        response = await read_multiple(
            stranger, request_class, [protocol.INFO_UUID, protocol.STATUS_UUID]
        )
    except TimeoutError:
        pytest.fail(f"no answer within {ANSWER_WITHIN:g} s")
    assert response.op_code == att.Opcode.ATT_ERROR_RESPONSE
    assert response.error_code == NO_ENCRYPTION


# ------------------------------------------------------------------------------ Just Works and PIN


async def test_just_works_bond_made_while_the_pin_is_off_reads_status(bed: Testbed) -> None:
    await bed.charger(OPTIONAL)
    phone = await bed.phone()
    link = await phone.connect(SERIAL)  # no PIN to type: Just Works
    assert link.paired_now
    assert not link.info.pin_enabled
    assert link.connection.is_encrypted
    client = await client_of(link)
    raw = await client.read(client.value(protocol.STATUS_UUID))
    assert isinstance(raw, bytes)
    assert ChargerStatus.decode(raw).state is ChargingState.IDLE
    assert (await link.start_charging()).state is ChargingState.CHARGING
    assert await client.write(client.cccd_of(protocol.STATUS_UUID), b"\x01\x00") is None


async def test_enabling_the_pin_ends_every_just_works_bond(bed: Testbed) -> None:
    """The owner's own Just Works link and another phone's lose access; both need the PIN."""
    daemon = await bed.charger(OPTIONAL)
    owner_phone = await bed.phone("owner")
    other_phone = await bed.phone("other")
    owner_link = await owner_phone.connect(SERIAL)
    other_link = await other_phone.connect(SERIAL)
    assert [bond.authenticated for bond in daemon.store.keystore.list_bonds()] == [False, False]
    owner = await client_of(owner_link)
    other = await client_of(other_link)
    ticket = await bed.authority(daemon).authorise(owner_link, Action.ENABLE_PIN)

    assert await owner.write(owner.value(protocol.ADMIN_UUID), ticket) is None
    assert daemon.store.pin_enabled
    assert daemon.store.keystore.list_bonds() == []
    # Still encrypted with the forgotten Just Works keys: no longer good enough.
    for client in (other, owner):
        assert await client.read(client.value(protocol.STATUS_UUID)) == NO_AUTHENTICATION
        control = client.value(protocol.CONTROL_UUID)
        assert await client.write(control, bytes([protocol.ControlOp.START])) == NO_AUTHENTICATION
    assert daemon.evse.status.state is ChargingState.IDLE
    # The writer still gets its receipt, then the charger drops both links.
    raw = await owner.read(owner.value(protocol.ADMIN_RESULT_UUID))
    assert isinstance(raw, bytes)
    result = AdminResult.decode(raw)
    assert result.ok
    assert verify_receipt(daemon.store.secret, SERIAL, result.receipt).pin_enabled
    assert await wait_disconnected(owner.connection, 5.0)
    assert await wait_disconnected(other.connection, 5.0)

    for phone in (owner_phone, other_phone):
        with pytest.raises(PinNeeded):
            await phone.connect(SERIAL)
        link = await phone.connect(SERIAL, pin=str(daemon.store.current_pin()))
        assert link.paired_now
        assert (await link.status()).state is ChargingState.IDLE
    bonds = daemon.store.keystore.list_bonds()
    assert len(bonds) == 2
    assert all(bond.authenticated for bond in bonds)
