"""The wire limits every adapter bounds its input by (core/limits.py)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from chargepin.core.errors import InvalidConfig
from chargepin.core.limits import (
    MAX_EPOCH,
    SERIAL_MAX_LENGTH,
    require_now,
    serial_problem,
)
from chargepin.core.protocol import AdvertPayload, InfoFlag, OpenInfo, PinModeCode, ProtocolError


@pytest.mark.parametrize(
    "value",
    [
        AdvertPayload("CP-0001", InfoFlag(0), 0),
        OpenInfo("CP-0001", "Pulsar", "6.11", PinModeCode.MANDATORY, InfoFlag(0), 0, 0, bytes(8)),
    ],
)
def test_the_epoch_is_the_u32_of_the_air_format(value: AdvertPayload | OpenInfo) -> None:
    assert MAX_EPOCH == 2**32 - 1
    last = dataclasses.replace(value, epoch=MAX_EPOCH)
    assert type(value).decode(last.encode()) == last
    with pytest.raises(ProtocolError, match="u32"):
        dataclasses.replace(value, epoch=MAX_EPOCH + 1).encode()


@pytest.mark.parametrize("serial", ["C", "CP-0001", "cp_0001", "X" * SERIAL_MAX_LENGTH])
def test_serials_of_the_label(serial: str) -> None:
    assert serial_problem(serial) is None


@pytest.mark.parametrize(
    "serial", ["", "X" * (SERIAL_MAX_LENGTH + 1), "CP 0001", "CP/0001", "CP-\u00c41", "CP-1\n", 7]
)
def test_serials_no_label_has_are_refused_saying_the_rule(serial: object) -> None:
    problem = serial_problem(serial)
    assert problem is not None and f"1 to {SERIAL_MAX_LENGTH} characters" in problem


@pytest.mark.parametrize("now", [0, 1767225600.5])
def test_a_clock_reading_is_any_finite_number(now: float) -> None:
    assert require_now(now) == now


@pytest.mark.parametrize("now", [math.nan, math.inf, -math.inf, True, "1767225600", None])
def test_a_clock_reading_that_is_not_a_finite_number_is_refused(now: object) -> None:
    with pytest.raises(InvalidConfig, match="now must be finite unix seconds"):
        require_now(now)
