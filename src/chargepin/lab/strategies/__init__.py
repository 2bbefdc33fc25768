"""Hypothesis strategies for every byte-level input of chargepin, and the fuzz targets on them.

docs/SECURITY.md, "Fuzzing". What an attacker in radio range, a forged file or a failing disk
controls, one module per input family: the core wire formats (`wire`), advertising data
(`advertising`), tickets (`tickets`), receipts (`receipts`), sticker payloads (`stickers`),
provisioning bundle files (`bundles`), the charger's state file (`state_files`), and GATT writes
(`gatt_writes`; their radio harness is `chargepin.lab.fuzz.Air`). For each there are structured
valid values, mutations of valid encodings (`mutations`, `json_texts`: bit flips, cuts,
extensions, splices) and raw bytes. A target's check feeds one example to the real code and
raises AssertionError only when the code misbehaves (`oracle`): an exception other than the
documented ChargepinError, an error without a message, altered data accepted, a valid value not
read back, a refused state file changed.

`TARGETS` (`targets`) is what `chargepin lab fuzz` runs for minutes and tests/lab/test_fuzz.py
for seconds.
"""

from chargepin.lab.strategies.bundles import BundleCase
from chargepin.lab.strategies.gatt_writes import (
    CCCD_VALUES,
    CONTROL_VALUES,
    MAX_ATT_VALUE,
    NOTIFY_OFF,
    NOTIFY_ON,
    OWNER,
    STRANGER,
    GattWrite,
    control_oracle,
    expected_answers,
    gatt_writes,
    junk_tickets,
)
from chargepin.lab.strategies.mutations import mutations
from chargepin.lab.strategies.oracle import ErrorLog, exception_name
from chargepin.lab.strategies.state_files import (
    ByteDamage,
    SqlEdit,
    StateFileCase,
    real_state_file,
)
from chargepin.lab.strategies.stickers import StickerCase
from chargepin.lab.strategies.targets import TARGETS, FuzzTarget
from chargepin.lab.strategies.tickets import TICKET_REASONS_FOR_JUNK

__all__ = [
    "CCCD_VALUES",
    "CONTROL_VALUES",
    "MAX_ATT_VALUE",
    "NOTIFY_OFF",
    "NOTIFY_ON",
    "OWNER",
    "STRANGER",
    "TARGETS",
    "TICKET_REASONS_FOR_JUNK",
    "BundleCase",
    "ByteDamage",
    "ErrorLog",
    "FuzzTarget",
    "GattWrite",
    "SqlEdit",
    "StateFileCase",
    "StickerCase",
    "control_oracle",
    "exception_name",
    "expected_answers",
    "gatt_writes",
    "junk_tickets",
    "mutations",
    "real_state_file",
]
