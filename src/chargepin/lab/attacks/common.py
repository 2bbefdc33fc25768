"""What every attack shares: a fresh charger per trial, the attacker's radio, simulated time.

Simulated time is what the attack would cost the attacker: every attempt is charged the wall
time it took on the virtual radio (a real radio is slower: connection set-up alone takes tens of
milliseconds and a passkey pairing a second or more, so this favours the attacker), and every
lockout the charger imposes is waited out by moving the charger's clock, charged in full.
Everything the attacker decides is based on what any central in range can see: advertising,
the open info characteristic (epoch, lockout retry-after) and SMP answers.
"""

from __future__ import annotations

import contextlib
import logging
import random
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chargepin.charger.daemon import ChargerDaemon
from chargepin.clock import FakeClock
from chargepin.core.attempts import Refusal
from chargepin.core.pin import MAX_PASSKEY, Pin
from chargepin.core.profiles import ProfileName
from chargepin.core.smp import REFUSAL_CODES, SmpError
from chargepin.lab.central import BareCentral, PairingOutcome
from chargepin.lab.testbed import ChargerSpec, Testbed

WRONG_PASSKEY = SmpError.CONFIRM_VALUE_FAILED
"""The reason the charger fails a wrong passkey with, at the round whose bit was wrong."""
BUSY = REFUSAL_CODES[Refusal.BUSY]
LOCKED = REFUSAL_CODES[Refusal.LOCKED]
PASSKEY_SPACE = MAX_PASSKEY + 1
"""Six digits: the LE passkey range 000000-999999."""
LOCK_MARGIN = 1.0
"""Seconds the attacker waits past the advertised retry-after (it is rounded to whole seconds)."""


def quiet_bumble() -> None:
    """Failed pairings are the point here: keep Bumble's warnings about them out of the output.

    Only ever raises a logger's level (the demo silences more than this).
    """
    levels = {
        "bumble": logging.ERROR,
        # Both ends hang up after a failed pairing; the virtual controller logs an error for the
        # second Terminate of a link already gone. Harmless here, and hundreds of times per run.
        "bumble.controller": logging.CRITICAL,
        "chargepin": logging.ERROR,
    }
    for name, level in levels.items():
        logger = logging.getLogger(name)
        logger.setLevel(max(level, logger.getEffectiveLevel()))


@dataclass
class Attempt:
    """One connection of the attacker: what it typed and how the charger answered."""

    passkey: int | None
    epoch: int
    error: int | None  # None: paired
    failed_round: int | None
    seconds: float  # wall time on the virtual radio, charged to the attacker


@dataclass
class Trial:
    """One attack on one fresh charger."""

    recovered: bool = False
    failed_attempts: int = 0
    refused_locked: int = 0
    refused_busy: int = 0
    lockouts: int = 0
    attempt_seconds: float = 0.0
    lockout_seconds: float = 0.0
    epochs_seen: int = 1
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def simulated_seconds(self) -> float:
        return self.attempt_seconds + self.lockout_seconds

    def to_dict(self, with_attempts: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "recovered": self.recovered,
            "failed_attempts": self.failed_attempts,
            "refused_locked": self.refused_locked,
            "refused_busy": self.refused_busy,
            "lockouts": self.lockouts,
            "attempt_seconds": round(self.attempt_seconds, 4),
            "lockout_seconds": round(self.lockout_seconds, 1),
            "simulated_seconds": round(self.simulated_seconds, 1),
            "epochs_seen": self.epochs_seen,
        }
        if with_attempts:
            data["attempts"] = [asdict(a) for a in self.attempts]
        return data


class Arena:
    """One fresh charger of a profile on its own virtual radio, a virtual clock, an attacker."""

    def __init__(self, bed: Testbed, clock: FakeClock, daemon: ChargerDaemon) -> None:
        self.bed = bed
        self.clock = clock
        self.daemon = daemon
        self.attackers: list[BareCentral] = []

    @property
    def pin(self) -> Pin:
        """The charger's PIN now (the lab's referee reads it; the attacker never does)."""
        return self.daemon.store.current_pin()

    async def attacker(self, name: str = "attacker") -> BareCentral:
        central = BareCentral(self.bed.radio, f"{name}-{len(self.attackers)}")
        await central.start()
        self.attackers.append(central)
        return central

    def wait(self, trial: Trial, seconds: float) -> None:
        """The attacker waits out a lock: the charger's clock moves, the attacker pays."""
        self.clock.advance(seconds)
        trial.lockout_seconds += seconds

    async def attempt(self, central: BareCentral, trial: Trial, choose: Any) -> Attempt:
        """One connection: read the open info; if locked, wait the lock out; else pair.

        `choose(info)` returns the passkey to type, from what the attacker can see (the info
        characteristic: epoch, retry-after). Returns the attempt; the trial's counters move.
        """
        started = time.perf_counter()
        connection = await central.connect(self.daemon)
        try:
            info = await central.read_info(connection)
            if info.locked and info.retry_after > 0:
                await central.hang_up(connection)
                spent = time.perf_counter() - started
                self._charge(trial, spent)
                trial.lockouts += 1
                self.wait(trial, info.retry_after + LOCK_MARGIN)
                return Attempt(None, info.epoch, LOCKED, None, spent)
            passkey = int(choose(info))
            outcome: PairingOutcome = await central.attempt(connection, passkey)
        finally:
            await central.hang_up(connection)
        spent = time.perf_counter() - started
        self._charge(trial, spent)
        attempt = Attempt(passkey, info.epoch, outcome.error, outcome.failed_round, spent)
        trial.attempts.append(attempt)
        if outcome.error is None:
            trial.recovered = True
        elif outcome.error == LOCKED:
            trial.refused_locked += 1
        elif outcome.error == BUSY:
            trial.refused_busy += 1
        else:
            trial.failed_attempts += 1
        return attempt

    def _charge(self, trial: Trial, seconds: float) -> None:
        self.clock.advance(seconds)
        trial.attempt_seconds += seconds


@contextlib.asynccontextmanager
async def arena(
    profile: ProfileName, rng: random.Random, serial: str = "CP-LAB-0001"
) -> AsyncIterator[Arena]:
    """A fresh charger of `profile` with a secret (so a PIN) drawn from `rng`."""
    quiet_bumble()
    with tempfile.TemporaryDirectory(prefix="chargepin-lab-") as directory:
        clock = FakeClock()
        bed = Testbed(Path(directory), clock)
        try:
            spec = ChargerSpec(serial=serial, profile=profile, secret=rng.randbytes(32))
            daemon = await bed.charger(spec)
            field_ = Arena(bed, clock, daemon)
            yield field_
        finally:
            for central in field_.attackers if "field_" in locals() else []:
                await central.stop()
            await bed.close()


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if not ordered:
        return float("nan")
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def trial_summary(trials: list[Trial]) -> dict[str, Any]:
    """Medians and worst cases over the trials."""
    failed = [float(t.failed_attempts) for t in trials]
    simulated = [t.simulated_seconds for t in trials]
    recovered = [t for t in trials if t.recovered]
    return {
        "trials": len(trials),
        "recovered": len(recovered),
        "failed_attempts_median": median(failed),
        "failed_attempts_worst": max(failed, default=0.0),
        "simulated_seconds_median": round(median(simulated), 1),
        "simulated_seconds_worst": round(max(simulated, default=0.0), 1),
        "lockouts_median": median([float(t.lockouts) for t in trials]),
        "seconds_per_attempt_median": round(
            median([a.seconds for t in trials for a in t.attempts]), 4
        ),
    }
