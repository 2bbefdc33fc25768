"""The link rules (chargepin.core.links): protected access, and which link goes when full."""

from __future__ import annotations

import pytest

from chargepin.core.links import (
    AccessRefusal,
    Evict,
    EvictLater,
    Slot,
    idle_stranger,
    protected_access,
    room,
)
from chargepin.core.lockout import LockoutState, record_failure
from chargepin.core.profiles import ProfileName, security_profile

NOW = 1_000.0


def locked(name: ProfileName) -> LockoutState:
    profile = security_profile(name)
    state = LockoutState()
    for i in range(profile.lockout.failures):
        state = record_failure(profile.lockout, state, NOW - 5 + i)
    return state


def access(name: ProfileName, state: LockoutState, **link: bool) -> AccessRefusal | None:
    facts = {"admitted": False, "encrypted": True, "pin_enabled": True, "passkey_bond": True}
    return protected_access(security_profile(name), state, NOW, **{**facts, **link})


@pytest.mark.parametrize("name", list(ProfileName))
def test_a_passkey_bond_on_an_encrypted_link_gets_in(name: ProfileName) -> None:
    assert access(name, LockoutState()) is None


@pytest.mark.parametrize("name", list(ProfileName))
def test_encryption_and_with_the_pin_a_passkey_bond_are_needed(name: ProfileName) -> None:
    assert access(name, LockoutState(), encrypted=False) is AccessRefusal.NOT_ENCRYPTED
    assert access(name, LockoutState(), passkey_bond=False) is AccessRefusal.NOT_PASSKEY_BONDED
    assert access(name, LockoutState(), passkey_bond=False, pin_enabled=False) is None


def test_a_classic_lock_keeps_out_bonded_phones_but_not_an_admitted_link() -> None:
    assert access(ProfileName.CLASSIC, locked(ProfileName.CLASSIC)) is AccessRefusal.LOCKED
    assert access(ProfileName.CLASSIC, locked(ProfileName.CLASSIC), admitted=True) is None


def test_a_hardened_lock_keeps_out_new_pairings_only() -> None:
    assert access(ProfileName.HARDENED, locked(ProfileName.HARDENED)) is None


def test_an_idle_stranger_is_unencrypted_and_not_pairing() -> None:
    assert idle_stranger(encrypted=False, pairing=False)
    assert not idle_stranger(encrypted=True, pairing=False)
    assert not idle_stranger(encrypted=False, pairing=True)


def test_room_is_made_only_when_every_slot_is_taken() -> None:
    slots = [Slot(1, 0.0, True), Slot(2, 1.0, True), Slot(3, 2.0, True)]
    assert room(slots, 4, NOW, grace=5.0) is None
    assert room([*slots, Slot(4, 3.0, True)], 4, NOW, grace=5.0) == Evict(1)


def test_the_oldest_idle_stranger_goes_and_paired_links_never_do() -> None:
    slots = [Slot(1, 0.0, False), Slot(2, 3.0, True), Slot(3, 1.0, True), Slot(4, 2.0, False)]
    assert room(slots, 4, NOW, grace=5.0) == Evict(3)
    busy = [Slot(h, float(h), False) for h in range(4)]
    assert room(busy, 4, NOW, grace=5.0) is None


def test_a_stranger_within_its_grace_goes_when_it_comes_of_age() -> None:
    slots = [Slot(1, NOW - 1.0, True), Slot(2, NOW - 0.5, True), Slot(3, 0.0, False)]
    assert room(slots, 3, NOW, grace=5.0) == EvictLater(NOW + 4.0)
    assert room(slots, 3, NOW + 4.0, grace=5.0) == Evict(1)
