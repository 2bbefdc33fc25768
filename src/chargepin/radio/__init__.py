"""Radios: the virtual one (in-process and across processes), transports, the bond store."""

from __future__ import annotations

from chargepin.radio.keystore import SqliteKeyStore, open_keystore_file
from chargepin.radio.transport import TransportError, open_hci
from chargepin.radio.virtual import HciEndpoints, VirtualRadio, serve_radio

__all__ = [
    "HciEndpoints",
    "SqliteKeyStore",
    "TransportError",
    "VirtualRadio",
    "open_hci",
    "open_keystore_file",
    "serve_radio",
]
