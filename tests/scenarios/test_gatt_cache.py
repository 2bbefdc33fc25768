"""The phone's GATT cache on the real stack: a bonded reconnect skips discovery and reads the
Database Hash and the open info in one round trip; a changed charger, stale handles or a damaged
cache row mean discovery again, never a crash and never a read or write through a wrong handle.

ATT requests are counted on the phone's HCI traffic (a Bumble snooper: the packets as sent)."""

from __future__ import annotations

import collections

import pytest
from bumble import att, gatt
from bumble.snoop import Snooper

from chargepin.core import protocol
from chargepin.lab.testbed import Testbed
from chargepin.phone.client import Phone
from chargepin.phone.errors import PinNeeded
from chargepin.phone.gatt_cache import GattCache

ACL = 0x02
ATT_CID = 0x0004
DISCOVERY = {
    att.Opcode.ATT_READ_BY_GROUP_TYPE_REQUEST,
    att.Opcode.ATT_FIND_BY_TYPE_VALUE_REQUEST,
    att.Opcode.ATT_READ_BY_TYPE_REQUEST,
    att.Opcode.ATT_FIND_INFORMATION_REQUEST,
}


class AttRequests(Snooper):
    """The ATT opcodes a host sends, from its HCI ACL packets (H4: type, handle, length, L2CAP)."""

    def __init__(self) -> None:
        self.sent: collections.Counter[att.Opcode] = collections.Counter()

    def snoop(self, hci_packet: bytes, direction: Snooper.Direction) -> None:
        if direction != Snooper.Direction.HOST_TO_CONTROLLER or hci_packet[0] != ACL:
            return
        if int.from_bytes(hci_packet[7:9], "little") == ATT_CID and len(hci_packet) > 9:
            self.sent[att.Opcode(hci_packet[9])] += 1

    def discovery(self) -> int:
        return sum(self.sent[opcode] for opcode in DISCOVERY)

    def total(self) -> int:
        return sum(self.sent.values())


async def _bonded(bed: Testbed) -> tuple[Phone, AttRequests, str]:
    daemon = await bed.charger()
    phone = await bed.phone()
    link = await phone.connect("CP-0001", pin=str(daemon.store.current_pin()))
    await link.disconnect()
    requests = AttRequests()
    phone.device.host.snooper = requests
    return phone, requests, daemon.address


async def test_bonded_reconnect_uses_the_cache_one_round_trip_no_discovery(bed: Testbed) -> None:
    phone, requests, address = await _bonded(bed)
    assert phone.gatt_cache.get(address) is not None
    link = await phone.connect("CP-0001")
    assert not link.paired_now and link.connection.is_encrypted
    assert link.info.serial == "CP-0001"
    assert requests.discovery() == 0
    # The MTU exchange and one Read Multiple Variable (hash + info): nothing else.
    assert requests.sent == {
        att.Opcode.ATT_EXCHANGE_MTU_REQUEST: 1,
        att.Opcode.ATT_READ_MULTIPLE_VARIABLE_REQUEST: 1,
    }
    # The cached handles work for reads, writes and the status subscription.
    assert (await link.start_charging()).cable_locked
    updates: list[object] = []
    await link.subscribe_status(updates.append)
    stopped = await link.stop_charging()
    assert updates and updates[-1] == stopped  # notified through the cached CCCD handle
    await link.disconnect()


async def test_changed_database_is_noticed_and_rediscovered(bed: Testbed) -> None:
    phone, requests, address = await _bonded(bed)
    before = phone.gatt_cache.get(address)
    assert before is not None
    # A firmware update: the charger's database gains a service (its hash changes).
    [daemon] = bed.daemons
    daemon.device.add_service(
        gatt.Service(
            "180F",
            [
                gatt.Characteristic(
                    "2A19", gatt.Characteristic.Properties.READ, gatt.Characteristic.READABLE, b"d"
                )
            ],
        )
    )
    link = await phone.connect("CP-0001")
    assert not link.paired_now
    assert requests.discovery() > 0
    assert (await link.status()).current_limit == 32
    await link.disconnect()
    after = phone.gatt_cache.get(address)
    assert after is not None and after.database_hash != before.database_hash
    requests.sent.clear()
    link = await phone.connect("CP-0001")  # and the new cache is used from then on
    assert requests.discovery() == 0
    await link.disconnect()


async def test_stale_handles_mean_discovery_never_a_wrong_write(bed: Testbed) -> None:
    phone, requests, address = await _bonded(bed)
    cache = phone.gatt_cache.get(address)
    assert cache is not None
    # Handles that point elsewhere (what a changed database would do): the info handle is the
    # write-only control point, the hash handle the info characteristic.
    control = cache.handle_of(protocol.CONTROL_UUID)
    info = cache.handle_of(protocol.INFO_UUID)
    for hash_handle, info_handle in ((cache.hash_handle, control), (info, info)):
        stale = GattCache(
            cache.database_hash,
            hash_handle,
            tuple(
                c
                if c.uuid != protocol.INFO_UUID
                else type(c)(c.uuid, info_handle, c.end_group_handle, c.properties)
                for c in cache.characteristics
            ),
        )
        phone.gatt_cache.put(address, stale)
        requests.sent.clear()
        link = await phone.connect("CP-0001")
        assert requests.discovery() > 0
        assert requests.sent[att.Opcode.ATT_WRITE_REQUEST] == 0
        assert link.info.serial == "CP-0001"
        await link.disconnect()
        assert phone.gatt_cache.get(address) == cache  # rebuilt as discovered


@pytest.mark.parametrize(
    "row",
    [
        "not json",
        '{"format": 1}',
        '{"format": 2, "hash": "", "hash_handle": 1, "characteristics": []}',
        '{"format": 1, "hash": "00", "hash_handle": 13, "characteristics": []}',
        '{"format": 1, "hash": "' + "00" * 16 + '", "hash_handle": 0, "characteristics": []}',
        '{"format": 1, "hash": "' + "00" * 16 + '", "hash_handle": 13, "characteristics": [[1]]}',
    ],
)
async def test_damaged_cache_row_is_ignored_and_rebuilt(bed: Testbed, row: str) -> None:
    phone, requests, address = await _bonded(bed)
    with phone.bonds.connection as db:
        db.execute("UPDATE gatt_cache SET cache = ? WHERE address = ?", (row, address.upper()))
    link = await phone.connect("CP-0001")
    assert not link.paired_now
    assert requests.discovery() > 0
    await link.status()
    await link.disconnect()
    assert phone.gatt_cache.get(address) is not None


async def test_forgetting_the_charger_forgets_its_database(bed: Testbed) -> None:
    phone, _requests, address = await _bonded(bed)
    assert await phone.forget(address)
    assert phone.gatt_cache.get(address) is None


async def test_a_stranger_with_the_chargers_serial_gets_no_cached_handles(bed: Testbed) -> None:
    phone, requests, address = await _bonded(bed)
    stranger = await bed.charger(name="stranger")  # same serial, its own address, no bond
    assert stranger.address != address
    with pytest.raises(PinNeeded):
        await phone.connect(stranger.address)
    assert requests.discovery() > 0
    assert requests.sent[att.Opcode.ATT_READ_MULTIPLE_VARIABLE_REQUEST] == 0
    assert phone.gatt_cache.get(stranger.address) is None
    assert phone.gatt_cache.get(address) is not None


async def test_two_phones_each_reconnect_from_their_own_cache(bed: Testbed) -> None:
    phone, requests, address = await _bonded(bed)
    [daemon] = bed.daemons
    other = await bed.phone("other phone")
    link = await other.connect(address, pin=str(daemon.store.current_pin()))
    await link.disconnect()
    other_requests = AttRequests()
    other.device.host.snooper = other_requests
    for each in (phone, other):
        link = await each.connect(address)
        assert not link.paired_now
        await link.status()
        await link.disconnect()
    assert requests.discovery() == other_requests.discovery() == 0
    assert requests.sent[att.Opcode.ATT_READ_MULTIPLE_VARIABLE_REQUEST] == 1
    assert other_requests.sent[att.Opcode.ATT_READ_MULTIPLE_VARIABLE_REQUEST] == 1
