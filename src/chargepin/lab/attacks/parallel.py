"""`chargepin lab attack parallel`: 8 attacker radios pairing with wrong passkeys at once.

The lockout counts failures per charger, not per connection, and the charger serves one pairing
at a time (a second concurrent one is told busy and counted). This attack checks that many
attackers together get no more passkey attempts served than one: at most `failures` (5) in any
`window` (60 s) of charger time, in both profiles (docs/SECURITY.md, "Parallel connections").

Each round, all 8 attackers (in half of the rounds a random 1-7 of them) connect (the charger
takes 4 links at a time and advertises again when one ends; the others wait for that, and those
whose connection request loses the race see their link fail to be established and try again),
read the open info and pair typing a wrong passkey. An attempt was *served* when the charger let
it reach passkey entry: the attacker's stack was asked for the passkey. A round costs its wall
time once (the attackers run side by side), then the attackers pause a random few seconds, or,
when the charger said locked, either wait the lock out or come back in the middle of it to check
that it holds."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from bumble.device import Connection

from chargepin.charger.store import MAX_EVENTS
from chargepin.core.attempts import AttemptKind
from chargepin.core.events import EventKind
from chargepin.core.profiles import PROFILES, ProfileName
from chargepin.core.protocol import OpenInfo
from chargepin.core.smp import WRONG_PIN_CODES
from chargepin.lab.attacks.common import (
    BUSY,
    LOCK_MARGIN,
    LOCKED,
    PASSKEY_SPACE,
    Arena,
    arena,
    median,
)
from chargepin.lab.central import BareCentral

NAME = "parallel"
ATTACKERS = 8
DEFAULT_HOURS = 2.0
"""Charger time per trial: 24 lockouts under `classic`, 5 growing ones under `hardened`."""
MAX_PAUSE = 20.0
"""Seconds the attackers may pause between rounds when not locked, drawn at random, so that the
served attempts fall at every offset of the lockout window instead of all at one instant."""
BURST_SHARE = 0.5
"""Share of rounds in which all 8 attackers fire; in the others a random 1-7 of them do, so
that failures also pile up across rounds and the sliding window is tested at its edges."""
PROBE_SHARE = 0.5
"""Share of lockouts in which the attackers come back mid-lock instead of waiting it out."""
CONNECT_TRIES = 50
"""Connection requests one attacker makes per round before it gives the round up."""
SERVED_ERRORS = tuple(sorted(WRONG_PIN_CODES))
"""What a served attempt with a wrong passkey fails with."""


@dataclass
class Shot:
    """One attacker's pairing attempt, as the attacker saw it."""

    attacker: int
    round: int
    at: float  # charger clock, seconds since the trial started
    error: int | None  # SMP error code; None: paired (a wrong passkey never should)
    served: bool  # the charger let it reach passkey entry


@dataclass
class ParallelTrial:
    """One run of the attack on a fresh charger."""

    rounds: int = 0
    shots: list[Shot] = field(default_factory=list)
    no_link: int = 0  # connection requests whose link was never established
    gave_up: int = 0  # attacker rounds without any link (CONNECT_TRIES reached)
    attempt_seconds: float = 0.0
    pause_seconds: float = 0.0
    lockout_seconds: float = 0.0
    mid_lock_probes: int = 0
    lock_durations: list[float] = field(default_factory=list)
    daemon_served_at: list[float] = field(default_factory=list)
    daemon_log_complete: bool = True

    @property
    def simulated_seconds(self) -> float:
        return self.attempt_seconds + self.pause_seconds + self.lockout_seconds

    def served_at(self) -> list[float]:
        return sorted(s.at for s in self.shots if s.served)

    def count(self, error: int | None) -> int:
        return sum(1 for s in self.shots if s.error == error)

    def to_dict(self, failures: int, window: float) -> dict[str, Any]:
        served = self.served_at()
        known = (*SERVED_ERRORS, BUSY, LOCKED)
        other = sorted({s.error for s in self.shots if s.error is not None} - set(known))
        return {
            "rounds": self.rounds,
            "attempts": len(self.shots),
            "served": len(served),
            "paired": sum(1 for s in self.shots if s.error is None),
            "refused_busy": self.count(BUSY),
            "refused_locked": self.count(LOCKED),
            "other_smp_errors": [f"0x{error:02X}" for error in other],
            "no_link": self.no_link,
            "gave_up": self.gave_up,
            "served_max_in_window": max_in_window(served, window),
            "daemon_served": len(self.daemon_served_at),
            "daemon_served_max_in_window": max_in_window(self.daemon_served_at, window),
            "daemon_log_complete": self.daemon_log_complete,
            "bound_held": bound_held(self, failures, window),
            "lockouts": len(self.lock_durations),
            "lock_durations": self.lock_durations,
            "mid_lock_probes": self.mid_lock_probes,
            "attempt_seconds": round(self.attempt_seconds, 3),
            "pause_seconds": round(self.pause_seconds, 1),
            "lockout_seconds": round(self.lockout_seconds, 1),
            "simulated_seconds": round(self.simulated_seconds, 1),
            "served_at": [round(t, 3) for t in served],
        }


def max_in_window(times: list[float], window: float) -> int:
    """The most of `times` inside any half-open interval [t, t + window) of charger time.

    The lockout forgets a failure `window` seconds after it (it keeps `t > now - window`), so
    two attempts exactly `window` apart never share a window.
    """
    ordered = sorted(times)
    best = 0
    start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def bound_held(trial: ParallelTrial, failures: int, window: float) -> bool:
    """At most `failures` served in any window, seen from both sides, and no pairing made."""
    return (
        max_in_window(trial.served_at(), window) <= failures
        and max_in_window(trial.daemon_served_at, window) <= failures
        and all(s.error is not None for s in trial.shots)
    )


async def read_info_if_linked(central: BareCentral, connection: Connection) -> OpenInfo | None:
    """The open info, or None when the link was never established.

    On the virtual radio (as on air) several attackers answer the same advertising event; the
    charger takes one and the others' links fail to be established (HCI 0x3E) just after their
    controller reported them up. A read on such a link never gets an answer, so the read races
    the disconnection.
    """
    if connection.handle not in central.device.connections:
        return None
    gone = asyncio.Event()
    connection.once(connection.EVENT_DISCONNECTION, lambda *_: gone.set())
    read = asyncio.ensure_future(central.read_info(connection))
    waiter = asyncio.ensure_future(gone.wait())
    try:
        await asyncio.wait({read, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if read.done() and not read.cancelled() and read.exception() is None:
        return read.result()
    read.add_done_callback(lambda task: task.cancelled() or task.exception())  # retrieved
    read.cancel()
    return None


def wrong_passkey(rng: random.Random, pin: int) -> int:
    """A random passkey other than the charger's PIN (the lab's referee knows it)."""
    while True:
        passkey = rng.randrange(1, PASSKEY_SPACE)
        if passkey != pin:
            return passkey


async def shoot(
    place: Arena, central: BareCentral, index: int, trial: ParallelTrial, passkey: int, at: float
) -> Shot | None:
    """One attacker's attempt in a round: connect (again, until a link holds), read, pair."""
    for _ in range(CONNECT_TRIES):
        connection = await central.connect(place.daemon)
        info = await read_info_if_linked(central, connection)
        if info is None:
            trial.no_link += 1
            await central.hang_up(connection)
            continue
        try:
            outcome = await central.attempt(connection, passkey)
            served = central.delegate.asked.is_set()
            await central.wait_disconnected(connection, 1.0)  # the charger drops it
        finally:
            await central.hang_up(connection)
        return Shot(index, trial.rounds, at, outcome.error, served)
    trial.gave_up += 1
    return None


async def attack_trial(place: Arena, rng: random.Random, seconds: float) -> ParallelTrial:
    """Rounds of 8 concurrent attempts until `seconds` of charger time have passed."""
    trial = ParallelTrial()
    centrals = [await place.attacker(f"attacker{i}") for i in range(ATTACKERS)]
    start = place.clock.now()

    def charge(wall: float) -> None:
        place.clock.advance(wall)
        trial.attempt_seconds += wall

    def left() -> float:
        return max(seconds - (place.clock.now() - start), 0.0)

    while left() > 0:
        at = place.clock.now() - start
        pin = place.pin.passkey
        firing = ATTACKERS if rng.random() < BURST_SHARE else rng.randint(1, ATTACKERS - 1)
        chosen = sorted(rng.sample(range(ATTACKERS), firing))
        passkeys = {i: wrong_passkey(rng, pin) for i in chosen}
        began = time.perf_counter()
        shots = await asyncio.gather(
            *(shoot(place, centrals[i], i, trial, passkeys[i], at) for i in chosen)
        )
        charge(time.perf_counter() - began)  # the attackers ran side by side: charged once
        trial.rounds += 1
        trial.shots.extend(s for s in shots if s is not None)
        if any(s is not None and s.error == LOCKED for s in shots):
            # Any central may read the retry-after on the open info: that is what they wait.
            began = time.perf_counter()
            info = await probe_info(place, centrals[0])
            charge(time.perf_counter() - began)
            wait = info.retry_after + LOCK_MARGIN if info is not None else MAX_PAUSE
            if info is not None and info.retry_after > 0 and rng.random() < PROBE_SHARE:
                wait = rng.uniform(0.0, info.retry_after)
                trial.mid_lock_probes += 1
            wait = min(wait, left())  # the trial ends at its horizon
            place.clock.advance(wait)
            trial.lockout_seconds += wait
        else:
            pause = min(rng.uniform(0.0, MAX_PAUSE), left())
            place.clock.advance(pause)
            trial.pause_seconds += pause
    trial.lock_durations, trial.daemon_served_at, trial.daemon_log_complete = daemon_records(
        place, start
    )
    return trial


async def probe_info(place: Arena, central: BareCentral) -> OpenInfo | None:
    """Connect and read the open info; None if no link could be made."""
    for _ in range(CONNECT_TRIES):
        connection = await central.connect(place.daemon)
        try:
            info = await read_info_if_linked(central, connection)
        finally:
            await central.hang_up(connection)
        if info is not None:
            return info
    return None


def daemon_records(place: Arena, start: float) -> tuple[list[float], list[float], bool]:
    """From the charger's own log: the lock durations, when it served a passkey attempt, and
    whether the log still holds every attempt (it keeps the last 1000 events).

    A served attempt is a `pairing_ok` or a `pairing_failed` that is not a busy refusal (busy
    refusals are counted failures but ran no passkey round).
    """
    store = place.daemon.store
    events = store.events(limit=MAX_EVENTS)
    counters = store.counters()
    ok, failed = EventKind.PAIRING_OK, EventKind.PAIRING_FAILED
    logged = sum(1 for e in events if e.kind in (failed, ok))
    complete = logged == counters[failed] + counters[ok]
    locks = [float(e.detail.split()[0]) for e in events if e.kind == EventKind.LOCKED]
    busy = AttemptKind.BUSY.value  # the daemon's detail: "<address> <attempt kind>"
    served = [
        e.at - start
        for e in events
        if e.kind == ok or (e.kind == failed and not e.detail.endswith(busy))
    ]
    return locks, served, complete


async def run(
    profile: ProfileName, trials: int, seed: int, *, hours: float = DEFAULT_HOURS
) -> dict[str, Any]:
    """`trials` fresh chargers, each attacked by 8 radios for `hours` of charger time."""
    rng = random.Random(seed)
    config = PROFILES[profile].lockout
    failures, window = config.failures, config.window
    done: list[ParallelTrial] = []
    for _ in range(trials):
        async with arena(profile, rng) as place:
            done.append(await attack_trial(place, rng, hours * 3600.0))
    records = [t.to_dict(failures, window) for t in done]
    held = all(r["bound_held"] for r in records)
    worst = max((r["served_max_in_window"] for r in records), default=0)
    worst_daemon = max((r["daemon_served_max_in_window"] for r in records), default=0)
    summary_ = {
        "trials": len(records),
        "attackers": ATTACKERS,
        "hours_per_trial": hours,
        "failures": failures,
        "window": window,
        "attempts": sum(r["attempts"] for r in records),
        "served": sum(r["served"] for r in records),
        "served_max_in_window": worst,
        "daemon_served_max_in_window": worst_daemon,
        "refused_busy": sum(r["refused_busy"] for r in records),
        "refused_locked": sum(r["refused_locked"] for r in records),
        "no_link": sum(r["no_link"] for r in records),
        "paired": sum(r["paired"] for r in records),
        "lockouts": sum(r["lockouts"] for r in records),
        "served_per_hour_median": round(
            median([r["served"] / (r["simulated_seconds"] / 3600.0) for r in records]), 1
        ),
        "simulated_seconds_median": round(median([r["simulated_seconds"] for r in records]), 1),
        "trials_bound_held": sum(1 for r in records if r["bound_held"]),
    }
    verdict = (
        f"at most {worst} passkey attempts served in any {window:.0f} s "
        f"(limit {failures}) with {ATTACKERS} attackers at once; "
        f"{summary_['refused_busy']} busy and {summary_['refused_locked']} locked refusals"
        if held
        else f"BOUND BROKEN: {max(worst, worst_daemon)} passkey attempts served within "
        f"{window:.0f} s (limit {failures}) by {ATTACKERS} concurrent attackers"
    )
    return {
        "attack": NAME,
        "profile": profile,
        "seed": seed,
        "parameters": {
            "attackers": ATTACKERS,
            "hours": hours,
            "max_pause": MAX_PAUSE,
            "burst_share": BURST_SHARE,
            "probe_share": PROBE_SHARE,
            "lock_margin": LOCK_MARGIN,
        },
        "summary": summary_,
        "trials": records,
        "as_expected": held and bool(records),
        "verdict": verdict,
    }


def summary(report: dict[str, Any]) -> list[tuple[str, str]]:
    s = report["summary"]
    return [
        ("trials (bound held)", f"{s['trials']} ({s['trials_bound_held']})"),
        ("attackers at once", str(s["attackers"])),
        ("simulated time per trial (median)", f"{s['simulated_seconds_median'] / 3600:.2f} h"),
        ("pairing attempts", str(s["attempts"])),
        ("served (reached passkey entry)", str(s["served"])),
        ("served per hour (median)", str(s["served_per_hour_median"])),
        (
            f"most served in any {s['window']:.0f} s (attackers / charger log)",
            f"{s['served_max_in_window']} / {s['daemon_served_max_in_window']}"
            f" (limit {s['failures']})",
        ),
        (f"refused busy (0x{BUSY:02X})", str(s["refused_busy"])),
        (f"refused locked (0x{LOCKED:02X})", str(s["refused_locked"])),
        ("links never established (radio)", str(s["no_link"])),
        ("lockouts", str(s["lockouts"])),
        ("pairings made", str(s["paired"])),
    ]
