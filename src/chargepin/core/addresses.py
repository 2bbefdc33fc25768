"""Bluetooth LE random static addresses: the identity both the charger and the phone use."""

from __future__ import annotations

import re
import secrets

_ADDRESS = re.compile(r"[0-9A-F]{2}(?::[0-9A-F]{2}){5}", re.ASCII)


def static_address_problem(address: str) -> str | None:
    """Why `address` (upper-case, MSB first) is not a random static address, or None.

    Core spec Vol 6 Part B 1.3.2.1: the two most significant bits are 1 and the other 46 bits
    are neither all 0 nor all 1.
    """
    if not _ADDRESS.fullmatch(address):
        return "it is not six hexadecimal octets separated by colons"
    value = int(address.replace(":", ""), 16)
    if value >> 46 != 0b11:
        return "its two most significant bits are not both 1 (random static addresses start C-F)"
    random_part = value & ((1 << 46) - 1)
    if random_part in (0, (1 << 46) - 1):
        return "its 46 random bits are all 0 or all 1"
    return None


def random_static_address() -> str:
    """A new random static device address such as "C3:1F:9A:07:55:E2"."""
    while True:
        value = bytearray(secrets.token_bytes(6))
        value[0] |= 0xC0
        address = ":".join(f"{octet:02X}" for octet in value)
        if static_address_problem(address) is None:
            return address
