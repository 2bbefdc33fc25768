"""The pairing gate: who is served, who is refused, and an admitted link during a lockout."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargepin.core import lockout
from chargepin.core.attempts import PROFILE_NAMES, PairingRequest, Refusal, SecurityProfile, gate
from chargepin.core.lockout import LockoutState

GOOD = PairingRequest(secure_connections=True, can_enter_passkey=True)
JUST_WORKS = PairingRequest(secure_connections=True, can_enter_passkey=False)


def locked_state(profile: SecurityProfile, now: float) -> LockoutState:
    state = LockoutState()
    for i in range(profile.lockout.failures):
        state = lockout.record_failure(profile.lockout, state, now - 10 + i)
    assert not lockout.check(profile.lockout, state, now).allowed
    return state


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_a_lock_refuses_everyone_but_an_admitted_link(name: str) -> None:
    profile = SecurityProfile.build(name)
    state = locked_state(profile, 1000.0)
    common = {"pin_enabled": True, "request": GOOD, "now": 1000.0}
    assert gate(profile, state, another_pairing_running=False, **common) is Refusal.LOCKED
    assert gate(profile, state, another_pairing_running=False, admitted=True, **common) is None


@given(
    st.sampled_from(PROFILE_NAMES),
    st.booleans(),
    st.sampled_from([GOOD, JUST_WORKS]),
)
def test_admission_lifts_the_lock_and_nothing_else(
    name: str, busy: bool, request: PairingRequest
) -> None:
    profile = SecurityProfile.build(name)
    state = locked_state(profile, 1000.0)
    refusal = gate(
        profile,
        state,
        pin_enabled=True,
        another_pairing_running=busy,
        request=request,
        now=1000.0,
        admitted=True,
    )
    unlocked = gate(
        profile,
        LockoutState(),
        pin_enabled=True,
        another_pairing_running=busy,
        request=request,
        now=1000.0,
    )
    assert refusal == unlocked  # busy and Just Works are refused exactly as without a lock
