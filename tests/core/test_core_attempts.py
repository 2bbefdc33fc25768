"""The pairing gate: who is served, who is refused, and an admitted link during a lockout."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargepin.core import lockout
from chargepin.core.attempts import PairingRequest, Refusal, gate
from chargepin.core.lockout import LockoutState
from chargepin.core.profiles import ProfileName, SecurityProfile, security_profile

GOOD = PairingRequest(secure_connections=True, can_enter_passkey=True)
JUST_WORKS = PairingRequest(secure_connections=True, can_enter_passkey=False)


def locked_state(profile: SecurityProfile, now: float) -> LockoutState:
    state = LockoutState()
    for i in range(profile.lockout.failures):
        state = lockout.record_failure(profile.lockout, state, now - 10 + i)
    assert not lockout.check(profile.lockout, state, now).allowed
    return state


@pytest.mark.parametrize("name", list(ProfileName))
def test_a_lock_refuses_everyone_but_an_admitted_link(name: str) -> None:
    profile = security_profile(name)
    state = locked_state(profile, 1000.0)
    common = {"pin_enabled": True, "request": GOOD, "now": 1000.0}
    assert gate(profile, state, another_pairing_running=False, **common) is Refusal.LOCKED
    assert gate(profile, state, another_pairing_running=False, admitted=True, **common) is None


@given(
    st.sampled_from(ProfileName),
    st.booleans(),
    st.sampled_from([GOOD, JUST_WORKS]),
)
def test_admission_lifts_the_lock_and_nothing_else(
    name: str, busy: bool, request: PairingRequest
) -> None:
    profile = security_profile(name)
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


def test_profiles_are_one_table_and_unknown_names_say_which_exist() -> None:
    from chargepin.core.errors import InvalidConfig
    from chargepin.core.lockout import LockoutScope
    from chargepin.core.profiles import PROFILES, lockout_config

    assert security_profile("hardened") is PROFILES[ProfileName.HARDENED]
    assert PROFILES[ProfileName.HARDENED].rotate_on_failure
    assert PROFILES[ProfileName.HARDENED].lockout.scope is LockoutScope.PAIRING
    assert not PROFILES[ProfileName.CLASSIC].rotate_on_failure
    assert PROFILES[ProfileName.CLASSIC].lockout.scope is LockoutScope.ALL
    assert lockout_config("classic", failures=3).failures == 3
    for bad in ("paranoid", "", None, 3):
        with pytest.raises(InvalidConfig, match="choose one of classic, hardened"):
            security_profile(bad)
    with pytest.raises(InvalidConfig, match="unknown lockout settings"):
        lockout_config("hardened", attempts=3)
