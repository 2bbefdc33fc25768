"""The fuzz targets: one input kind each, how to make its examples and the check each must pass."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from hypothesis import strategies as st

from chargepin.core.protocol import (
    AdminResult,
    AdvertPayload,
    ChargerStatus,
    ControlCommand,
    OpenInfo,
)
from chargepin.lab.strategies.advertising import ADVERTISING_CASES, check_advertisement
from chargepin.lab.strategies.bundles import BUNDLE_CASES, check_bundle_file
from chargepin.lab.strategies.receipts import check_receipt, receipt_cases
from chargepin.lab.strategies.state_files import (
    STATE_FILE_DAMAGE,
    STATE_FILE_VALUES,
    check_state_file,
)
from chargepin.lab.strategies.stickers import STICKER_CASES, check_sticker
from chargepin.lab.strategies.tickets import check_ticket, ticket_cases
from chargepin.lab.strategies.wire import (
    ADMIN_RESULTS,
    ADMIN_RESULTS_LONG_DETAIL,
    ADVERT_PAYLOADS,
    CHARGER_INFOS,
    CONTROL_COMMANDS,
    STATUSES,
    check_admin_result_encoding,
    check_decoder,
    exact_wire,
    prefix_wire,
    status_wire,
    wire_cases,
)

T = TypeVar("T")


@dataclass(frozen=True)
class FuzzTarget(Generic[T]):
    """One input kind: how to make examples, and the check one example must pass."""

    name: str
    description: str
    strategy: st.SearchStrategy[T]
    check: Callable[[T], None]


def _targets(*targets: FuzzTarget[Any]) -> Mapping[str, FuzzTarget[Any]]:
    return {target.name: target for target in targets}


TARGETS: Mapping[str, FuzzTarget[Any]] = _targets(
    FuzzTarget(
        "info",
        "OpenInfo.decode: the open info characteristic as the phone reads it",
        wire_cases(CHARGER_INFOS),
        check_decoder(OpenInfo.decode, prefix_wire),
    ),
    FuzzTarget(
        "advert-payload",
        "AdvertPayload.decode: the manufacturer data of an advertisement",
        wire_cases(ADVERT_PAYLOADS, 64),
        check_decoder(AdvertPayload.decode, prefix_wire),
    ),
    FuzzTarget(
        "advertisement",
        "parse_advertisement: whole advertising data heard while scanning (Bumble's AD parser)",
        ADVERTISING_CASES,
        check_advertisement,
    ),
    FuzzTarget(
        "status",
        "ChargerStatus.decode: the status characteristic and its notifications",
        wire_cases(STATUSES, 16),
        check_decoder(ChargerStatus.decode, status_wire),
    ),
    FuzzTarget(
        "control",
        "ControlCommand.decode: what the charger does with a control write",
        wire_cases(CONTROL_COMMANDS, 16),
        check_decoder(ControlCommand.decode, exact_wire),
    ),
    FuzzTarget(
        "admin-result",
        "AdminResult.decode: the admin result characteristic as the phone reads it",
        wire_cases(ADMIN_RESULTS),
        check_decoder(AdminResult.decode, exact_wire),
    ),
    FuzzTarget(
        "admin-result-encode",
        "AdminResult.encode: refusals quoting any text still encode (detail cut to 255 octets)",
        ADMIN_RESULTS_LONG_DETAIL,
        check_admin_result_encoding,
    ),
    FuzzTarget(
        "ticket",
        "open_ticket: sealed, altered, foreign, junk and re-sealed garbage tickets",
        ticket_cases(),
        check_ticket,
    ),
    FuzzTarget(
        "receipt",
        "verify_receipt: signed, altered, foreign, junk and re-signed garbage receipts",
        receipt_cases(),
        check_receipt,
    ),
    FuzzTarget(
        "sticker",
        "StickerPayload.parse: scanned QR texts, altered stickers and any text",
        STICKER_CASES,
        check_sticker,
    ),
    FuzzTarget(
        "bundle-file",
        "read_bundle + provision_charger: `charger init --bundle FILE` on any file",
        BUNDLE_CASES,
        check_bundle_file,
    ),
    FuzzTarget(
        "state-file-damage",
        "StateStore.open, charger info/pin, daemon start: flipped, cut, overwritten, random files",
        STATE_FILE_DAMAGE,
        check_state_file,
    ),
    FuzzTarget(
        "state-file-values",
        "the same on valid SQLite files with garbage rows and values",
        STATE_FILE_VALUES,
        check_state_file,
    ),
)
"""Every pure fuzz target (no radio harness), by name. The GATT target is in lab/fuzz.py."""
