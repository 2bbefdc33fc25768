"""`chargepin lab attack lockout-dos`: keep the charger locked; who can still get in?

The lockout that stops brute force is also a way to deny service: an attacker in range fails
5 times, waits the lock out, fails 5 times again. This attack keeps a charger locked for hours
of charger time and measures what four people experience meanwhile (docs/SECURITY.md, "Lockout
denial of service"):

- the owner, whose phone bonded before the attack, comes now and then to read the status and
  start or stop charging: once with a plain phone (its own Bluetooth stack, or an app that cannot
  reach the fleet service), once with the app, which asks the fleet for an `admit_pairing`
  ticket when the charger advertises a lock (DECISIONS.md, "A member's new phone is admitted
  past a lockout");
- an invited user's new phone with the right PIN (what the fleet shows; the lab reads it off the
  charger), plain and with the app's admission.

After each "locked, try again in ..." a person comes back when told plus a human delay. They
race the attacker at every lock end.

`as_expected` judges the owner: the plain phone is served at once in `hardened` (scope
`pairing`) and refused while locked in `classic` (scope `all`: the vendor's documented
weakness); the app is served at once in both. The invited phones are measured and reported.

A discrete-event simulation on the charger's clock: every actor acts at its next time, in time
order, one at a time over the real stack; each action is charged its wall time, idle time is
skipped by moving the clock. The attacker comes back `LOCK_MARGIN` (1 s) after the retry-after
it reads on the open info; people come back 0-`USER_DELAY_MAX` s after the time they were told.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from chargepin.core import lockout
from chargepin.core.events import EventKind
from chargepin.core.lockout import LockoutScope
from chargepin.core.pin import Pin
from chargepin.core.profiles import PROFILES, ProfileName
from chargepin.core.protocol import OpenInfo
from chargepin.core.tickets import Action
from chargepin.lab.attacks.common import LOCK_MARGIN, PASSKEY_SPACE, Arena, arena, median
from chargepin.lab.central import BareCentral
from chargepin.lab.testbed import OwnerAuthority
from chargepin.phone.client import ChargerLink, Phone
from chargepin.phone.errors import ChargerLocked, PhoneError

NAME = "lockout-dos"
DEFAULT_HOURS = 4.0
"""Charger time per trial: 48 lockouts under `classic`, 6 growing ones under `hardened`."""
USER_DELAY_MAX = 60.0
"""Seconds after the announced retry time within which a person tries again (uniform)."""
FIRST_VISIT = (60.0, 900.0)
"""When each person first turns up, seconds after the attack began."""
OWNER_GAP = (900.0, 2700.0)
"""Seconds between two visits of an owner (after a visit that got in)."""
RETRY_AFTER_ERROR = (5.0, 60.0)
"""When a try fails for another reason (a busy charger, a lost link), a person retries soon."""

SERVED = "served"
LOCKED = "locked"
PEOPLE = ("owner", "owner_app", "invited", "invited_app")
"""Who comes: `_app` phones use the app's admission ticket, the others do not."""


@dataclass
class Try:
    """One try of a person: when, whether the charger was locked then, and what they got."""

    at: float  # seconds since the attack began (charger clock)
    locked: bool  # the charger was locked at that moment (the lab's referee)
    outcome: str  # "served", "locked", or the error the phone client raised


@dataclass
class Visit:
    """A person who wants in, from arrival until served (or the end of the trial)."""

    arrived: float
    tries: list[Try] = field(default_factory=list)
    served_at: float | None = None

    def waited(self, horizon: float) -> float:
        """Seconds from arrival to the try that was served; to the horizon if none was."""
        end = self.served_at if self.served_at is not None else horizon
        return max(0.0, end - self.arrived)

    def to_dict(self, horizon: float) -> dict[str, Any]:
        return {
            "arrived": round(self.arrived, 1),
            "served": self.served_at is not None,
            "waited": round(self.waited(horizon), 1),
            "tries": len(self.tries),
            "tries_while_locked": sum(1 for t in self.tries if t.locked),
            "served_while_locked": sum(1 for t in self.tries if t.locked and t.outcome == SERVED),
            "outcomes": sorted({t.outcome for t in self.tries}),
        }


@dataclass
class Person:
    """One of the four people: their phone, how it connects, their visits."""

    name: str
    phone: Phone
    admit: bool
    returns: bool  # an owner comes back after getting in; an invited phone is done
    visits: list[Visit] = field(default_factory=list)

    def started(self) -> list[Visit]:
        """The visits that began before the end (the last one is often still due)."""
        return [v for v in self.visits if v.tries]

    def tries(self) -> list[Try]:
        return [t for v in self.started() for t in v.tries]

    def to_dict(self, horizon: float) -> dict[str, Any]:
        visits = [v.to_dict(horizon) for v in self.started()]
        served = [v for v in visits if v["served"]]
        return {
            "admission": self.admit,
            "visits": len(visits),
            "visits_served": len(served),
            "served_at_first_try": sum(1 for v in served if v["tries"] == 1),
            "tries": sum(v["tries"] for v in visits),
            "tries_while_locked": sum(v["tries_while_locked"] for v in visits),
            "served_while_locked": sum(v["served_while_locked"] for v in visits),
            "wait_max": max((v["waited"] for v in visits), default=0.0),
            "wait_max_when_served": max((v["waited"] for v in served), default=0.0),
            "outcomes": sorted({o for v in visits for o in v["outcomes"]}),
            "visit_records": visits,
        }


@dataclass
class DosTrial:
    """One charger kept locked for `horizon` seconds."""

    horizon: float
    people: dict[str, Person] = field(default_factory=dict)
    attacker_failures: int = 0
    attacker_probes: int = 0
    attacker_paired: int = 0
    action_seconds: float = 0.0
    lock_durations: list[float] = field(default_factory=list)
    locked_seconds: float = 0.0
    budget_exceeded: bool = False

    def owner_as_expected(self, profile: ProfileName) -> bool:
        """Plain owner: hardened serves every try, classic refuses every try while locked.
        The app's owner: served at every try in both profiles."""
        plain, app = self.people["owner"].tries(), self.people["owner_app"].tries()
        while_locked = [t for t in plain if t.locked]
        if self.budget_exceeded or not while_locked or not any(t.locked for t in app):
            return False  # the lockout did not hold, or never caught an owner: nothing shown
        app_ok = all(t.outcome == SERVED for t in app)
        if PROFILES[profile].lockout.scope is LockoutScope.PAIRING:
            return app_ok and all(t.outcome == SERVED for t in plain)
        return app_ok and all(t.outcome == LOCKED for t in while_locked)

    def to_dict(self, profile: ProfileName) -> dict[str, Any]:
        return {
            "simulated_seconds": round(self.horizon, 1),
            "locked_share": round(self.locked_seconds / self.horizon, 4),
            "lockouts": len(self.lock_durations),
            "lock_durations": self.lock_durations,
            "attacker_failures": self.attacker_failures,
            "attacker_probes": self.attacker_probes,
            "attacker_paired": self.attacker_paired,
            "attacker_budget_exceeded": self.budget_exceeded,
            "owner_as_expected": self.owner_as_expected(profile),
            "action_seconds": round(self.action_seconds, 3),
            **{name: person.to_dict(self.horizon) for name, person in self.people.items()},
        }


class Siege:
    """The attacker and the four people around one charger, on its clock."""

    def __init__(
        self, place: Arena, rng: random.Random, people: list[Person], seconds: float
    ) -> None:
        self.place = place
        self.rng = rng
        self.serial = place.daemon.store.identity.serial
        self.authority: OwnerAuthority = place.bed.authority(place.daemon)
        self.start = place.clock.now()
        self.trial = DosTrial(horizon=seconds, people={p.name: p for p in people})
        self.attacker: BareCentral | None = None

    def now(self) -> float:
        return self.place.clock.now() - self.start

    def locked(self) -> bool:
        daemon = self.place.daemon
        return lockout.is_locked(
            daemon.profile.lockout, daemon.store.lockout_state, self.place.clock.now()
        )

    def attacker_budget(self) -> int:
        """Twice the failures the profile's lockout lets anyone make in the trial's time."""
        config = self.place.daemon.profile.lockout
        return 2 * config.failures * (int(self.trial.horizon // config.duration) + 1)

    def later(self, retry_after: float) -> float:
        """When a person told to retry in `retry_after` s tries again."""
        return self.now() + retry_after + self.rng.uniform(0.0, USER_DELAY_MAX)

    async def run(self) -> DosTrial:
        self.attacker = await self.place.attacker()
        trial = self.trial
        next_at = {"attacker": 0.0}
        for person in trial.people.values():
            person.visits.append(Visit(self.rng.uniform(*FIRST_VISIT)))
            next_at[person.name] = person.visits[-1].arrived
        budget = self.attacker_budget()
        while True:
            who = min(next_at, key=lambda name: next_at[name])
            if next_at[who] >= trial.horizon:
                break
            if trial.attacker_failures > budget:
                trial.budget_exceeded = True  # the lockout did not hold: stop, say so
                break
            if next_at[who] > self.now():
                self.place.clock.advance(next_at[who] - self.now())  # nobody acts meanwhile
            began = time.perf_counter()
            if who == "attacker":
                next_at[who] = self.now() + await self.attacker_step()
            else:
                next_at[who] = await self.person_step(trial.people[who])
            spent = time.perf_counter() - began
            self.place.clock.advance(spent)
            trial.action_seconds += spent
        if self.now() < trial.horizon:
            self.place.clock.advance(trial.horizon - self.now())
        self.read_locks()
        return trial

    # ------------------------------------------------------------------ the actors

    async def attacker_step(self) -> float:
        """Fail once (a wrong passkey), or see the lock and return when it ends: the delay."""
        assert self.attacker is not None
        central = self.attacker
        connection = await central.connect(self.place.daemon)
        try:
            info: OpenInfo = await central.read_info(connection)
            if info.locked and info.retry_after > 0:
                self.trial.attacker_probes += 1
                return info.retry_after + LOCK_MARGIN
            outcome = await central.attempt(connection, self.wrong_passkey())
            if outcome.error is None:
                self.trial.attacker_paired += 1
            else:
                self.trial.attacker_failures += 1
                await central.wait_disconnected(connection, 1.0)  # the charger drops it
            return 0.0
        finally:
            await central.hang_up(connection)

    def wrong_passkey(self) -> int:
        pin = self.place.pin.passkey
        while (passkey := self.rng.randrange(1, PASSKEY_SPACE)) == pin:
            pass
        return passkey

    async def fleet_pin(self, _info: OpenInfo) -> Pin:
        """The PIN of the charger's current epoch, as the fleet service shows it."""
        return self.place.pin

    async def fleet_admission(self, challenge: bytes) -> bytes:
        """The fleet's `admit_pairing` ticket for a member, bound to the link's challenge."""
        return self.authority.ticket(challenge, Action.ADMIT_PAIRING)

    async def person_step(self, person: Person) -> float:
        """One try: connect (bond, or pair with the PIN), read the status, start or stop
        charging. Returns when this person acts next."""
        visit = person.visits[-1]
        at, locked = self.now(), self.locked()
        retry_after: float | None = None
        link: ChargerLink | None = None
        outcome = "error"
        try:
            link = await person.phone.connect(
                self.serial,
                pin=self.fleet_pin,
                admit=self.fleet_admission if person.admit else None,
            )
            status = await link.status()
            await (link.stop_charging() if status.state else link.start_charging())
            outcome = SERVED
        except ChargerLocked as error:
            outcome = LOCKED
            # Refused on the status read (classic, bonded): the info read at connect has it.
            retry_after = float(link.info.retry_after if link else error.retry_after)
        except PhoneError as error:  # busy, wrong PIN, admission refused, lost link
            outcome = type(error).__name__
        finally:
            if link is not None:
                await link.wait_closed(0.0 if outcome == SERVED else 1.0)
                await link.disconnect()
        visit.tries.append(Try(at, locked, outcome))
        if outcome == SERVED:
            visit.served_at = at
            if not person.returns:
                return float("inf")  # paired and bonded: nothing more to measure
            person.visits.append(Visit(self.now() + self.rng.uniform(*OWNER_GAP)))
            return person.visits[-1].arrived
        if retry_after is not None:
            return self.later(retry_after)
        return self.now() + self.rng.uniform(*RETRY_AFTER_ERROR)

    def read_locks(self) -> None:
        """The lockouts from the charger's log, and how much of the trial they covered."""
        trial = self.trial
        end = self.start + trial.horizon
        for event in self.place.daemon.store.events(limit=1_000_000):
            if event.kind == EventKind.LOCKED:
                duration = float(event.detail.split()[0])
                trial.lock_durations.append(duration)
                trial.locked_seconds += max(0.0, min(event.at + duration, end) - event.at)


async def dos_trial(place: Arena, rng: random.Random, seconds: float) -> DosTrial:
    """Bond the owner's two phones, then run the siege for `seconds` of charger time."""
    bed = place.bed
    serial = place.daemon.store.identity.serial
    people = []
    for name in PEOPLE:
        phone = await bed.phone(name)
        owner = name.startswith("owner")
        if owner:
            link = await phone.connect(serial, pin=str(place.pin))
            await link.disconnect()
        people.append(Person(name, phone, admit=name.endswith("_app"), returns=owner))
    return await Siege(place, rng, people, seconds).run()


async def run(
    profile: ProfileName, trials: int, seed: int, *, hours: float = DEFAULT_HOURS
) -> dict[str, Any]:
    """`trials` fresh chargers, each kept locked for `hours` of charger time."""
    rng = random.Random(seed)
    done: list[DosTrial] = []
    for _ in range(trials):
        async with arena(profile, rng) as place:
            done.append(await dos_trial(place, rng, hours * 3600.0))
    records = [t.to_dict(profile) for t in done]
    owner_ok = bool(records) and all(r["owner_as_expected"] for r in records)
    # Admission is the answer to this attack (DECISIONS.md): the app's invited phone gets in.
    invited_ok = all(
        r["invited_app"]["visits"] > 0
        and r["invited_app"]["visits_served"] == r["invited_app"]["visits"]
        for r in records
    )
    summary_: dict[str, Any] = {
        "trials": len(records),
        "hours_per_trial": hours,
        "locked_share_median": median([r["locked_share"] for r in records]),
        "lockouts_median": median([float(r["lockouts"]) for r in records]),
        "attacker_failures_median": median([float(r["attacker_failures"]) for r in records]),
        "attacker_failures_per_hour_median": round(
            median([r["attacker_failures"] / hours for r in records]), 1
        ),
        "trials_lockout_broken": sum(1 for r in records if r["attacker_budget_exceeded"]),
    }
    for name in PEOPLE:
        summary_[name] = person_summary([r[name] for r in records])
    return {
        "attack": NAME,
        "profile": profile,
        "seed": seed,
        "parameters": {
            "hours": hours,
            "lock_margin": LOCK_MARGIN,
            "user_delay_max": USER_DELAY_MAX,
            "first_visit": list(FIRST_VISIT),
            "owner_gap": list(OWNER_GAP),
        },
        "summary": summary_,
        "trials": records,
        "as_expected": owner_ok and invited_ok,
        "verdict": verdict(profile, summary_, owner_ok)
        + ("" if invited_ok else "; INVITED PHONE NOT ADMITTED: admission is broken"),
    }


def person_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One person's numbers over the trials (waits of visits never let in run to the end)."""
    waits = [v["waited"] for r in records for v in r["visit_records"]]
    served = [v["waited"] for r in records for v in r["visit_records"] if v["served"]]
    return {
        "visits": sum(r["visits"] for r in records),
        "visits_served": sum(r["visits_served"] for r in records),
        "served_at_first_try": sum(r["served_at_first_try"] for r in records),
        "tries": sum(r["tries"] for r in records),
        "tries_while_locked": sum(r["tries_while_locked"] for r in records),
        "served_while_locked": sum(r["served_while_locked"] for r in records),
        "wait_median": round(median(waits), 1) if waits else 0.0,
        "wait_max": round(max(waits, default=0.0), 1),
        "wait_median_when_served": round(median(served), 1) if served else None,
        "wait_max_when_served": round(max(served, default=0.0), 1),
        "outcomes": sorted({o for r in records for o in r["outcomes"]}),
    }


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def verdict(profile: ProfileName, s: dict[str, Any], owner_ok: bool) -> str:
    if s["trials_lockout_broken"]:
        return (
            f"LOCKOUT DID NOT HOLD in {s['trials_lockout_broken']}/{s['trials']} trials: the "
            "attacker failed more than twice what the profile allows and the trial was stopped"
        )
    owner, app = s["owner"], s["owner_app"]
    if not owner_ok:
        owner_text = (
            f"OWNER NOT AS EXPECTED: plain phone served {owner['served_while_locked']} of "
            f"{owner['tries_while_locked']} tries while locked, app served "
            f"{app['served_while_locked']} of {app['tries_while_locked']}"
        )
    elif PROFILES[profile].lockout.scope is LockoutScope.PAIRING:
        owner_text = (
            f"bonded owner served at once on all {owner['visits']} visits, with or without the app"
        )
    else:
        owner_text = (
            f"bonded owner without the app locked out as documented for classic "
            f"({owner['tries_while_locked']} tries refused, in on {owner['visits_served']}/"
            f"{owner['visits']} visits only between two locks); with the app's admission "
            f"served at once ({app['visits']} visits)"
        )
    invited, invited_app = s["invited"], s["invited_app"]
    invited_text = (
        f"new invited phone without admission paired in {invited['visits_served']}/"
        f"{s['trials']} trials"
        + (
            f" (median wait {_minutes(invited['wait_median_when_served'])})"
            if invited["visits_served"]
            else ""
        )
        + f", with the app's admission in {invited_app['visits_served']}/{s['trials']}"
        + f" ({invited_app['served_at_first_try']} at the first try)"
    )
    return (
        f"{owner_text}; {invited_text}; charger locked {s['locked_share_median']:.1%} of the time"
    )


def summary(report: dict[str, Any]) -> list[tuple[str, str]]:
    s = report["summary"]
    rows = [
        ("trials x simulated time", f"{s['trials']} x {s['hours_per_trial']:g} h"),
        ("time the charger was locked (median)", f"{s['locked_share_median']:.1%}"),
        ("lockouts per trial (median)", f"{s['lockouts_median']:g}"),
        ("attacker's wrong PINs per hour (median)", f"{s['attacker_failures_per_hour_median']}"),
    ]
    labels = {
        "owner": "owner, bonded, no admission",
        "owner_app": "owner, bonded, app",
        "invited": "invited, new phone, no admission",
        "invited_app": "invited, new phone, app",
    }
    for name in PEOPLE:
        p = s[name]
        rows.append(
            (
                f"{labels[name]}: visits let in (at once)",
                f"{p['visits_served']}/{p['visits']} ({p['served_at_first_try']}); "
                f"{p['served_while_locked']}/{p['tries_while_locked']} tries while locked",
            )
        )
        rows.append(
            (
                f"{labels[name]}: wait median / max (never let in: until the end)",
                f"{_minutes(p['wait_median'])} / {_minutes(p['wait_max'])}",
            )
        )
    return rows
