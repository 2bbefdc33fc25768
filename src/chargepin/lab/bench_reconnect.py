"""`chargepin bench reconnect`: what chargepin adds to a bonded reconnect, from 1 to 1,000 bonds.

A bonded reconnect is the link-layer connect, the encryption with the stored LTK, and whatever
the phone and the charger do until the first protected read is answered. The first two are the
radio's and Bumble's; the rest is chargepin's own part, reported per round as

    chargepin = (connect -> first protected read) - link-layer connect - encryption

with the link and the encryption timed on the same round by wrapping Bumble's `Device.connect`
and `Device.encrypt` (bench.CallTimer), so the window is the real `Phone.connect` plus
`ChargerLink.status()` (the daemon's bond check). Three arms alternate round by round on one
event loop, so they share the machine's load:

- cached: the phone holds the charger's GATT database (phone/gatt_cache.py): MTU exchange, one
  Read Multiple Variable (Database Hash + info), the status read;
- rediscovery: the same phone with its cache row deleted before the round (what the first
  reconnect after a firmware update costs: discovery, info, status, the hash read, descriptor
  discovery and the cache write);
- bare Bumble: two plain devices, bonded, connect + encrypt (the reference for the stack's part).

The charger holds 1, 10, 100 and 1,000 bonds in turn (the others are other phones' keys under
random addresses, written through the daemon's own keystore): the cost must stay flat.
Target: the cached arm's median chargepin part <= 3 ms at every bond count. Next to the wall
time, the process's CPU time over the same window (minus the link's and the encryption's): on a
shared machine the wall time of a chain of ATT round trips follows the load, the CPU much less.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import os
import secrets
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bumble.keys import PairingKeys
from rich.table import Table

from chargepin.core.addresses import random_static_address
from chargepin.core.errors import ChargepinError
from chargepin.lab.bench import (
    DIGITS_MS,
    PROFILE,
    SETTLE,
    BenchError,
    CallTimer,
    Samples,
    _BareArm,
    _ChargepinArm,
    _quiet_bumble,
    check_bond_points,
    machine_info,
    report_bench,
)
from chargepin.lab.bench_bare import disconnect_both
from chargepin.lab.testbed import ChargerSpec, Testbed

TARGET_MS = 3.0
"""Acceptance: median chargepin part of a cached bonded reconnect, at every bond count."""

DEFAULT_ROUNDS = 30
DEFAULT_BONDS = (1, 10, 100, 1000)


async def _add_bonds(arm: _ChargepinArm, total: int) -> None:
    """Bring the charger's bonds up to `total`: other phones' keys under random addresses
    (copies of the real bond with a fresh IRK and LTK), through the daemon's keystore."""
    keystore = arm.daemon.store.keystore
    bonds = await keystore.get_all()
    if not bonds:
        raise BenchError("the charger holds no bond to copy")
    phone, template = bonds[0]
    for _ in range(total - len(bonds)):
        keys = PairingKeys.from_dict(template.to_dict())
        if keys.ltk is not None:
            keys.ltk = PairingKeys.Key(secrets.token_bytes(16), keys.ltk.authenticated)
        keys.irk = PairingKeys.Key(secrets.token_bytes(16), True)
        await keystore.update(random_static_address(), keys)
    # The bench phone's bond becomes the newest: resolving its private address then tries
    # every other phone's IRK first (the worst case; Bumble's resolver goes oldest first).
    await keystore.delete(phone)
    await keystore.update(phone, template)
    # What the daemon does with its bonds at power-on (Bumble's resolving list).
    await arm.daemon.device.refresh_resolving_list()


async def _cached_round(arm: _ChargepinArm, discovery: CallTimer) -> dict[str, float]:
    discovery.reset()
    durations = await arm.reconnect_round()
    if discovery.ended:
        raise BenchError("a cached reconnect discovered the charger's services")
    return durations


async def _rediscovery_round(arm: _ChargepinArm, discovery: CallTimer) -> dict[str, float]:
    arm.phone.gatt_cache.delete(arm.daemon.address)
    discovery.reset()
    durations = await arm.reconnect_round()
    discovery.last  # noqa: B018  (raises if the phone did not discover)
    return durations


async def measure_reconnect(
    directory: Path, rounds: int, bond_counts: tuple[int, ...]
) -> dict[str, Any]:
    """One charger per bond count on one radio, one phone bonded with each; every round runs
    a cached reconnect to each charger, a rediscovery on the first and the bare reference, so
    the bond counts are compared side by side, not one after the other."""
    bed = Testbed(directory)
    bare: _BareArm | None = None
    try:
        # The phone connects from resolvable private addresses, as phones do: the charger
        # resolves each to a bond (Vol 3 Part C 10.7) before it knows which phone it is.
        first = await _ChargepinArm.start(bed, privacy=True)
        discovery = CallTimer(first.phone, "_discover_characteristics")
        arms = [first]
        for bonds in bond_counts[1:]:
            daemon = await bed.charger(ChargerSpec(profile=PROFILE), name=f"charger-{bonds}")
            arms.append(dataclasses.replace(first, daemon=daemon, pin=daemon.store.current_pin()))
        bare = _BareArm(first.pin.passkey)
        await bare.pair.start()
        for arm, bonds in zip(arms, bond_counts, strict=True):
            link = await arm.phone.connect(arm.daemon.address, arm.pin)
            await disconnect_both(link.connection, arm.daemon.device)
            await asyncio.sleep(SETTLE)
            await _add_bonds(arm, bonds)
        await bare.bond()
        cached = [Samples() for _ in arms]
        rediscovery, reference = Samples(), Samples()
        # One unmeasured round each (the cache rows are written by the first).
        await _rediscovery_round(first, discovery)
        for arm in arms:
            await _cached_round(arm, discovery)
        await bare.reconnect_round()
        for _ in range(rounds):
            for arm, samples in zip(arms, cached, strict=True):
                samples.add(await _cached_round(arm, discovery))
            rediscovery.add(await _rediscovery_round(first, discovery))
            reference.add(await bare.reconnect_round())
        held = [len(await arm.daemon.store.keystore.get_all()) for arm in arms]
    finally:
        if bare is not None:
            await bare.pair.stop()
        await bed.close()
    return {
        "series": [_point(n, samples) for n, samples in zip(held, cached, strict=True)],
        "rediscovery": {
            "bonds": held[0],
            **{
                name: rediscovery.summary(name)
                for name in ("chargepin", "chargepin_cpu", "connect_to_read", "link", "encrypt")
            },
        },
        "bare_bumble": {name: reference.summary(name) for name in ("link", "encrypt")},
    }


def _point(bonds: int, cached: Samples) -> dict[str, Any]:
    own = cached.ms("chargepin")
    return {
        "bonds": bonds,
        **{
            name: cached.summary(name)
            for name in ("chargepin", "chargepin_cpu", "connect_to_read", "link", "encrypt")
        },
        "chargepin_samples_ms": [round(value, DIGITS_MS) for value in own],
        "pass": round(statistics.median(own), DIGITS_MS) <= TARGET_MS,
    }


def command_line(json_path: Path | None, rounds: int, bond_counts: tuple[int, ...]) -> str:
    parts = ["chargepin bench reconnect"]
    if json_path is not None:
        parts.append(f"--json {json_path}")
    parts.append(f"--rounds {rounds} --bonds {','.join(str(n) for n in bond_counts)}")
    return " ".join(parts)


async def run_bench(
    directory: Path, rounds: int, bond_counts: tuple[int, ...], command: str = ""
) -> dict[str, Any]:
    """The whole report as a JSON-ready dict; state files go under `directory`."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    if not bond_counts:
        raise BenchError("--bonds takes at least one number of bonds, e.g. 1,10,100")
    check_bond_points(bond_counts)
    started = datetime.datetime.now(datetime.UTC)
    report: dict[str, Any] = {
        "command": command,
        "started": started.isoformat(timespec="seconds"),
        "machine": machine_info(directory),
        "rounds": rounds,
        "target_ms": TARGET_MS,
    }
    report.update(await measure_reconnect(directory, rounds, bond_counts))
    medians = [point["chargepin"]["median"] for point in report["series"]]
    report["flatness"] = round(max(medians) / min(medians), 3) if min(medians) > 0 else None
    report["pass"] = all(point["pass"] for point in report["series"])
    report["load_average_end"] = [round(value, 2) for value in os.getloadavg()]
    report["duration_s"] = round((datetime.datetime.now(datetime.UTC) - started).total_seconds(), 1)
    return report


def report_table(report: dict[str, Any]) -> Table:
    table = Table(title="chargepin bench reconnect (ms; arms interleaved round by round)")
    for column in ("bonded reconnect", "chargepin part", "p90", "its CPU", "link", "encrypt", "n"):
        table.add_column(column, justify="right")
    for point in report["series"]:
        table.add_row(
            f"cached, charger with {point['bonds']} bonds",
            f"{point['chargepin']['median']:.2f}" + ("" if point["pass"] else " MISS"),
            f"{point['chargepin']['p90']:.2f}",
            f"{point['chargepin_cpu']['median']:.2f}",
            f"{point['link']['median']:.1f}",
            f"{point['encrypt']['median']:.2f}",
            str(point["chargepin"]["n"]),
        )
    again, bare = report["rediscovery"], report["bare_bumble"]
    table.add_row(
        f"rediscovery, {again['bonds']} bond(s)",
        f"{again['chargepin']['median']:.2f}",
        f"{again['chargepin']['p90']:.2f}",
        f"{again['chargepin_cpu']['median']:.2f}",
        f"{again['link']['median']:.1f}",
        f"{again['encrypt']['median']:.2f}",
        str(again["chargepin"]["n"]),
    )
    table.add_row(
        "bare Bumble, bonded",
        "",
        "",
        "",
        f"{bare['link']['median']:.1f}",
        f"{bare['encrypt']['median']:.2f}",
        str(bare["link"]["n"]),
    )
    verdict = "pass" if report["pass"] else "MISS"
    table.caption = (
        f"target: chargepin part <= {report['target_ms']} ms at every bond count: {verdict}; "
        f"largest / smallest median: {report['flatness']}; "
        f"load average {report['machine']['load_average']} -> {report['load_average_end']}"
    )
    return table


def run_reconnect_bench(
    json_path: Path | None,
    rounds: int = DEFAULT_ROUNDS,
    bond_counts: tuple[int, ...] = DEFAULT_BONDS,
    png_path: Path | None = None,
) -> int:
    """Run the bench, print the table, write the JSON; 0 on target, 1 missed, 2 not measured."""
    command = command_line(json_path, rounds, bond_counts)

    def measure() -> dict[str, Any]:
        with _quiet_bumble(), tempfile.TemporaryDirectory(prefix="chargepin-bench-") as tmp:
            report = asyncio.run(run_bench(Path(tmp), rounds, bond_counts, command))
        if png_path is not None:
            plot(png_path, [report])
        return report

    return report_bench(
        measure,
        (ChargepinError, ValueError, TimeoutError),
        report_table,
        json_path,
        lambda report: bool(report["pass"]),
    )


def plot(path: Path, reports: list[dict[str, Any]]) -> None:
    """chargepin's part of a cached bonded reconnect against the charger's bonds (log scale):
    wall and CPU medians, one line per run, and the 3 ms target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=120)
    for number, report in enumerate(reports, 1):
        series = report["series"]
        bonds = [point["bonds"] for point in series]
        load = report["machine"]["load_average"][0]
        wall = [point["chargepin"]["median"] for point in series]
        cpu = [point["chargepin_cpu"]["median"] for point in series]
        (line,) = axes.plot(bonds, wall, marker="o", label=f"run {number}: wall (load {load})")
        axes.plot(bonds, cpu, marker="s", linestyle="--", color=line.get_color(), label="its CPU")
    axes.axhline(TARGET_MS, color="0.5", linewidth=0.8, linestyle=":")
    axes.text(1, TARGET_MS, " target", fontsize=7, va="bottom", color="0.4")
    axes.set_xscale("log")
    axes.set_ylim(bottom=0)
    axes.set_xlabel("bonds the charger holds (log scale)")
    axes.set_ylabel("chargepin's part of a bonded reconnect (ms, median)")
    axes.legend(fontsize=7, ncol=2)
    axes.grid(True, which="major", axis="y", color="0.9")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
