"""What the charger advertises and when: the open info's flags and epoch, while a slot is free.

Advertising carries the serial, the state flags and the epoch (docs/PROTOCOL.md, "Advertising")
so a phone knows before connecting whether the charger is locked and which PIN epoch it is in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bumble import hci
from bumble.core import AdvertisingData
from bumble.device import Device

from chargepin.core import protocol


def advertising_data(info: protocol.OpenInfo) -> tuple[bytes, bytes]:
    """The advertising data and scan response for `info`."""
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


class Advertiser:
    """Keeps the advertising in step with the charger's state and its free link slots."""

    def __init__(
        self,
        device: Device,
        info: Callable[[], protocol.OpenInfo],
        *,
        interval: float,
        max_links: Callable[[], int],
    ) -> None:
        self._device = device
        self._info = info
        self._interval = interval
        self._max_links = max_links
        self._lock = asyncio.Lock()
        self._advertised: tuple[bytes, bytes] | None = None
        self.stopping = False

    async def refresh(self) -> None:
        """Advertise the current data while there is room for another phone.

        The running advertising set is updated in place (or re-enabled after a connection ended
        it), never stopped and recreated: a phone's CONNECT_IND that arrives in such a gap is
        lost and leaves the phone on a link the charger never saw.
        """
        async with self._lock:
            if self.stopping:
                return
            device = self._device
            advertising_set = device.legacy_advertising_set
            if len(device.connections) >= self._max_links():
                if advertising_set is not None and advertising_set.enabled:
                    await advertising_set.stop()
                return
            advert, scan_response = advertising_data(self._info())
            if advertising_set is None:  # first start, or a controller without extended sets
                if device.is_advertising and self._advertised == (advert, scan_response):
                    return
                self._advertised = (advert, scan_response)
                await device.start_advertising(
                    advertising_data=advert,
                    scan_response_data=scan_response,
                    advertising_interval_min=self._interval,
                    advertising_interval_max=self._interval,
                    own_address_type=hci.OwnAddressType.RANDOM,
                )
                return
            if self._advertised != (advert, scan_response):
                self._advertised = (advert, scan_response)
                await advertising_set.set_advertising_data(advert)
                await advertising_set.set_scan_response_data(scan_response)
            if not advertising_set.enabled:
                await advertising_set.start()
