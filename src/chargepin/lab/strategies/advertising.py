"""Whole advertising data a phone hears while scanning: a charger's, altered, or anyone's."""

from __future__ import annotations

from dataclasses import dataclass

from bumble import hci
from bumble.device import Advertisement
from hypothesis import strategies as st

from chargepin.core import protocol
from chargepin.core.protocol import AdvertPayload
from chargepin.lab.strategies.mutations import mutations
from chargepin.lab.strategies.wire import ADVERT_PAYLOADS
from chargepin.phone.client import FoundCharger, parse_advertisement

ADVERTISER = hci.Address("F0:F1:F2:F3:F4:F5")


def advertising_data(payload: AdvertPayload) -> bytes:
    """The daemon's advertising data for `payload`: flags, then manufacturer data."""
    flags = bytes([2, 0x01, 0x06])
    manufacturer = protocol.COMPANY_ID.to_bytes(2, "little") + payload.encode()
    return flags + bytes([1 + len(manufacturer), 0xFF]) + manufacturer


@dataclass(frozen=True)
class AdvertisingCase:
    """Advertising data a phone hears while scanning; `payload` when it is a charger's."""

    data: bytes
    payload: AdvertPayload | None = None


_AD_STRUCTURES = st.lists(
    st.tuples(st.sampled_from([0x01, 0x09, 0xFF, 0x16, 0x03]), st.binary(max_size=28)).map(
        lambda item: bytes([len(item[1]) + 1, item[0]]) + item[1]
    ),
    max_size=4,
).map(b"".join)

ADVERTISING_CASES = st.one_of(
    ADVERT_PAYLOADS.map(lambda payload: AdvertisingCase(advertising_data(payload), payload)),
    ADVERT_PAYLOADS.flatmap(lambda payload: mutations(advertising_data(payload))).map(
        AdvertisingCase
    ),
    _AD_STRUCTURES.map(AdvertisingCase),
    st.binary(max_size=254).map(AdvertisingCase),
)


def check_advertisement(case: AdvertisingCase) -> None:
    """Whatever a device in range advertises, the phone's scan finds a charger or skips it."""
    try:
        found = parse_advertisement(Advertisement(address=ADVERTISER, data_bytes=case.data))
    except Exception as error:  # the scan must never stop on a stranger's data
        raise AssertionError(f"{type(error).__name__} while scanning: {error}") from error
    if case.payload is not None:
        assert found == FoundCharger(
            str(ADVERTISER), case.payload.serial, case.payload.flags, case.payload.epoch
        )
