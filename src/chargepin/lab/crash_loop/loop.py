"""The crash loop itself: the radio, one daemon child at a time, and the iterations.

Each iteration the real daemon (`chargepin charger run`, a child process on `chargepin radio`)
serves a seeded workload from phones in this process (`workload`) until a seeded kill -9. With
the daemon down, `disk.check_state` reads the file and the oracle judges it; then the daemon is
restarted on it and must serve again (`restart`). A charger lives for a few iterations (its
lockout builds up across kills), then a fresh one is provisioned. What the phones did not see
may be lost: a failure the daemon had not committed, or a pairing the phone finished while the
charger had not yet stored the bond (SMP never acknowledges the last key PDU; the phone's next
encryption fails, "PIN or key missing" or a stale LTK, and it pairs again). The plan is seeded;
the timing is real, so two runs with one seed kill at slightly different instants.

In power-cut mode (`power_cut`) the daemon runs under the shim, and after the kill its state
files are replaced by what it had fsynced; the oracle then also allows the successes a cut may
take back (docs/SECURITY.md, "Durability of the pairing path"), and no more.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import logging
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from chargepin.charger.service import provision_charger
from chargepin.core import lockout
from chargepin.core.policy import FirmwareVersion
from chargepin.core.profiles import PROFILES
from chargepin.lab.bench import machine_info
from chargepin.lab.crash_loop.disk import check_state
from chargepin.lab.crash_loop.oracle import Witness
from chargepin.lab.crash_loop.power_cut import DurableImage, lost_writes, shim_library
from chargepin.lab.crash_loop.report import (
    KILL,
    POWER_CUT,
    PROFILE,
    Totals,
    command_line,
    iteration_record,
    summary_table,
)
from chargepin.lab.crash_loop.restart import serve_after_restart
from chargepin.lab.crash_loop.workload import (
    AFTER_WORKLOAD,
    FORGET_SHARE,
    KILL_WEIGHTS,
    OWNER_KILLS,
    OWNER_SHARE,
    OWNER_STEPS,
    STEP_WEIGHTS,
    Chain,
    Killer,
    KillMoment,
    Phones,
    Step,
    Workload,
    stop_workload,
)
from chargepin.lab.ports import free_ports
from chargepin.lab.processes import Service, ServiceError, start_charger, start_radio
from chargepin.lab.security_state import SecurityState

MODEL, FIRMWARE, PRODUCED = "Pulsar Max", FirmwareVersion.parse("6.11.2"), dt.date(2025, 9, 1)
CHAIN_LENGTH = (2, 6)
"""A charger lives through this many kills (inclusive range) before a fresh one is provisioned."""

PLAN_LENGTH = 6
"""Workload steps planned per iteration; the kill usually lands before the last one."""

MAX_KILL_DELAY = 0.8
"""Seconds: a random kill lands uniformly in [0, this] after the workload starts (a step takes
about 0.1 s on the virtual radio, so most land inside a step, some after the last)."""

PHONE_CONTROLLERS = 8
"""Radio controllers the phones take in turn. A controller reopened at once could meet its
previous TCP client's late disconnect in the radio (which then drops the new client's packets),
so each phone takes the next one: a controller is reused only after the seven others."""


class CrashLoop:
    """The radio, one daemon child at a time, and the iterations."""

    def __init__(
        self,
        directory: Path,
        rng: random.Random,
        power_cut: bool = False,
        owner_rng: random.Random | None = None,
    ) -> None:
        self.directory = directory
        self.rng = rng
        self.owner_rng = owner_rng or random.Random(0)
        self.shim = shim_library() if power_cut else None
        self.charger_port, *phone_ports = free_ports(1 + PHONE_CONTROLLERS)
        self.ports = [self.charger_port, *phone_ports]
        self.phone_ports = itertools.cycle(phone_ports)
        self.radio: Service | None = None
        self.daemon: Service | None = None
        self.chain: Chain | None = None
        self.chains = 0
        self.totals = Totals()

    def close(self) -> None:
        """Kill every child still running (the `finally` of the run)."""
        for service in (self.daemon, self.radio):
            if service is not None:
                service.kill()
        self.daemon = self.radio = None

    async def run(self, iterations: int) -> list[dict[str, Any]]:
        self.radio = await asyncio.to_thread(start_radio, self.ports, self.directory / "radio.log")
        records = []
        for index in range(1, iterations + 1):
            records.append(await self.iteration(index))
        if self.daemon is not None:
            late = await self._retire(self.daemon)
            self.daemon = None
            records[-1]["violations"].extend(late)
            self.totals.violations += len(late)
        return records

    @staticmethod
    async def _retire(daemon: Service) -> list[str]:
        """Stop a charger's daemon for good with SIGTERM, as its service manager would."""
        try:
            code = await asyncio.to_thread(daemon.stop)
        except subprocess.TimeoutExpired:
            code = None
        await asyncio.to_thread(daemon.kill)
        if code == 0:
            return []
        return [
            f"the daemon did not stop cleanly on SIGTERM (exit {code}):\n{daemon.stderr()[-2000:]}"
        ]

    async def _new_chain(self) -> Chain:
        self.chains += 1
        directory = self.directory / f"charger{self.chains:03d}"
        directory.mkdir()
        serial = f"CP-CRASH-{self.chains:03d}"
        secret = self.rng.randbytes(32)
        provisioned = provision_charger(
            directory / "charger.db",
            serial=serial,
            model=MODEL,
            firmware=FIRMWARE,
            produced=PRODUCED,
            secret=secret,
            profile=PROFILE,
        )
        chain = Chain(
            self.chains,
            directory,
            serial,
            provisioned.identity.address,
            self.rng.randint(*CHAIN_LENGTH),
            secret,
        )
        self.daemon = await self._start_daemon(chain)
        self.totals.chargers += 1
        return chain

    async def _start_daemon(self, chain: Chain) -> Service:
        transport = f"tcp-client:127.0.0.1:{self.charger_port}"
        env = None
        if self.shim is not None:
            image = DurableImage.beside(chain.state)
            image.seed()
            env = image.environment(self.shim)
        daemon, fields = await asyncio.to_thread(
            start_charger, chain.state, transport, chain.directory / "charger.log", env
        )
        if fields.get("address") != chain.address:
            daemon.kill()
            raise ServiceError(f"the daemon announced {fields}, expected {chain.address}")
        return daemon

    def _plan(self, locked: bool) -> tuple[list[Step], KillMoment, int, float]:
        """The steps, the kill moment, the event count of a triggered one and the delay of a
        random one. While locked no pairing completes: a kill as a phone finishes pairing
        becomes one as a phone is refused."""
        steps = list(STEP_WEIGHTS)
        plan = self.rng.choices(steps, [STEP_WEIGHTS[s] for s in steps], k=PLAN_LENGTH)
        moments = list(KILL_WEIGHTS)
        moment = self.rng.choices(moments, [KILL_WEIGHTS[m] for m in moments])[0]
        if locked and moment is KillMoment.BONDED:
            moment = KillMoment.REFUSAL
        delay = self.rng.uniform(0.0, MAX_KILL_DELAY)
        wanted = {
            KillMoment.REFUSAL: {Step.WRONG_PIN},
            KillMoment.BONDED: {Step.PAIR_NEW, Step.REPAIR},
        }
        if moment in wanted and not wanted[moment] & set(plan):
            plan[self.rng.randrange(PLAN_LENGTH)] = sorted(wanted[moment])[0]
        chosen = sum(step in wanted.get(moment, set()) for step in plan)
        target = self.rng.randint(1, max(chosen, 1))
        return (*self._owner_plan(plan, moment, target), delay)

    def _owner_plan(
        self, plan: list[Step], moment: KillMoment, target: int
    ) -> tuple[list[Step], KillMoment, int]:
        """In a share of the iterations, one owner ticket inserted among the phones' steps, and
        half the time the kill moved to it (drawn from `owner_rng`: a seed keeps its plan of
        the phones' steps and kills)."""
        rng = self.owner_rng
        if rng.random() >= OWNER_SHARE:
            return plan, moment, target
        plan = list(plan)
        step = rng.choice(OWNER_STEPS)
        if step is Step.CHANGE_PIN and rng.random() < FORGET_SHARE:
            step = Step.FORGET
        plan.insert(rng.randint(0, len(plan)), step)
        if rng.random() < 0.5:
            moments = list(OWNER_KILLS)
            return plan, rng.choices(moments, [OWNER_KILLS[m] for m in moments])[0], 1
        return plan, moment, target

    async def iteration(self, index: int) -> dict[str, Any]:
        """One workload, one kill -9, the checks with the daemon down, the restart."""
        if self.chain is None or self.daemon is None:
            self.chain = await self._new_chain()
        chain, daemon = self.chain, self.daemon
        assert daemon is not None
        before = SecurityState.read(chain.state)
        locked = lockout.is_locked(PROFILES[PROFILE].lockout, before.lockout, time.time())
        plan, moment, target, delay = self._plan(locked)
        witness = Witness(paired_at=dict(chain.repaired_at))
        killer = Killer(daemon, moment, target, witness)
        phones = Phones(self.phone_ports, chain, witness, killer)
        workload = Workload(phones, chain, self.rng, self.owner_rng)
        timing = await self._kill_during(workload, plan, killer, delay, index)
        self.daemon = None
        cut = None if self.shim is None else DurableImage.beside(chain.state).cut()

        confirmed = chain.confirmed_after(witness)
        power_cut = self.shim is not None
        check = check_state(chain.state, before, witness, confirmed, power_cut=power_cut)
        gone = {*check.successes_lost, *check.bonds_forgotten}
        chain.confirmed = {a: b for a, b in confirmed.items() if a not in gone}
        if check.after is not None:
            # A phone revoked by an acknowledged ticket, or whose bond the file no longer holds,
            # must not get back in with its old bond (the restart tries).
            bonded = set(check.after.addresses)
            acknowledged = {c.phone for c in witness.owner_changes if c.acknowledged}
            acknowledged.update(check.bonds_forgotten)
            chain.revoked = [
                path
                for address, path in chain.revoking.items()
                if address not in bonded or address in acknowledged
            ]
        chain.revoking = {}
        violations = list(check.violations)
        if killer.died_on_its_own:
            violations.append(f"the daemon had exited before the kill:\n{daemon.stderr()[-2000:]}")
        record = iteration_record(
            index, chain, plan, killer, delay, timing, workload.steps_done, before, check
        )
        if cut is not None:
            record["power_cut"] = cut
        if check.after is not None:
            record.update(await self._restart_and_serve(chain, check.after, violations))
        chain.iterations_left -= 1
        if self.daemon is not None and (chain.iterations_left <= 0 or violations):
            violations.extend(await self._retire(self.daemon))
            self.daemon = None
        if self.daemon is None:
            self.chain = None
        record["violations"] = violations
        self.totals.add(record, killer.triggered)
        self.totals.cuts_that_lost_writes += cut is not None and lost_writes(cut)
        return record

    async def _kill_during(
        self, workload: Workload, plan: list[Step], killer: Killer, delay: float, index: int
    ) -> dict[str, float]:
        """Run the workload until the kill, then stop it and reap the daemon."""
        started = time.time()
        task = asyncio.create_task(workload.run(plan))
        fired = asyncio.create_task(killer.fired.wait())
        timeout = delay if killer.moment is KillMoment.RANDOM else None
        await asyncio.wait({task, fired}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        killer.fire("after a delay" if not task.done() else AFTER_WORKLOAD)
        fired.cancel()
        await workload.phones.settle()
        await stop_workload(task, index)
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error  # a bug of the lab, not a finding
        await asyncio.to_thread(killer.daemon.kill)
        return {
            "killed_after_s": round(killer.killed_at - started, 3),
            "teardown_s": round(time.time() - killer.killed_at, 3),
        }

    async def _restart_and_serve(
        self, chain: Chain, after: SecurityState, violations: list[str]
    ) -> dict[str, Any]:
        """Restart on the same file, then check that it serves (restart.serve_after_restart)."""
        started = time.monotonic()
        try:
            self.daemon = await self._start_daemon(chain)
        except ServiceError as error:
            violations.append(f"the daemon did not restart on its state: {error}")
            return {"restart_s": None}
        result: dict[str, Any] = {"restart_s": round(time.monotonic() - started, 3)}
        phones = Phones(self.phone_ports, chain, Witness(), None)
        result.update(await serve_after_restart(phones, chain, after, violations))
        chain.repaired_at = phones.witness.paired_at
        return result


def _quiet_logs() -> None:
    """Failed pairings and dead peers are the point here: keep Bumble's warnings out."""
    logging.getLogger("bumble").setLevel(logging.CRITICAL)
    logging.getLogger("chargepin").setLevel(logging.ERROR)


async def crash_loop_report(
    iterations: int, seed: int, command: str = "", power_cut: bool = False
) -> dict[str, Any]:
    """Run the loop and return the report (what `--json` writes); `power_cut`: each kill is a
    power cut (power_cut.py), not only a crash of the daemon.

    The state files live in a temporary directory, deleted after a clean run and kept (its path
    in the report) when a check failed, for inspection.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    _quiet_logs()
    directory = Path(tempfile.mkdtemp(prefix="chargepin-crash-loop-"))
    loop = CrashLoop(directory, random.Random(seed), power_cut, random.Random(f"owner-{seed}"))
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    started = time.perf_counter()
    try:
        records = await loop.run(iterations)
    finally:
        loop.close()
    totals = loop.totals
    passed = totals.violations == 0
    if passed:
        shutil.rmtree(directory, ignore_errors=True)
    return {
        "command": command,
        "started": started_at,
        "machine": machine_info(Path(tempfile.gettempdir())),
        "seed": seed,
        "mode": POWER_CUT if power_cut else KILL,
        "profile": PROFILE,
        "lockout": PROFILES[PROFILE].lockout.to_dict(),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "kept_directory": None if passed else str(directory),
        "iterations": records,
        "totals": vars(totals),
        "pass": passed,
    }


def run_crash_loop(
    iterations: int, seed: int, json_path: Path | None, power_cut: bool = False
) -> int:
    """0 when no kill broke a promise of the state file, 1 otherwise (violations listed)."""
    command = command_line(iterations, seed, json_path, power_cut)
    report = asyncio.run(crash_loop_report(iterations, seed, command, power_cut))
    console = Console()
    console.print(summary_table(report))
    for record in report["iterations"]:
        for violation in record["violations"]:
            console.print(f"iteration {record['iteration']}: {violation}", markup=False)
    if report["kept_directory"]:
        console.print(f"state files kept in {report['kept_directory']}", markup=False)
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=1) + "\n")
        console.print(f"report written to {json_path}", markup=False)
    return 0 if report["pass"] else 1
