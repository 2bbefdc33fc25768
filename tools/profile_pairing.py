"""Where a pairing's CPU goes, and what Bumble's debug formatting costs (docs/PERFORMANCE.md).

A measurement script, not product code: `--no-format` rounds replace the `__str__` of Bumble's
packet classes (HCI, L2CAP, ATT, SMP, GATT) with one returning "", in this process only, to see
what an upstream fix (format only when debug logging is on) would buy. The product never patches
Bumble.

    .venv/bin/python tools/profile_pairing.py profile --rounds 40
    .venv/bin/python tools/profile_pairing.py formatting --rounds 40
    .venv/bin/python tools/profile_pairing.py keystore      # a bond stored, 1 to 1,000 bonds
    .venv/bin/python tools/profile_pairing.py window        # our steps inside pair(), timed
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import inspect
import logging
import os
import pstats
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bumble import att, hci, l2cap, smp
from bumble.keys import KeyStore, PairingKeys

from chargepin.core.addresses import random_static_address
from chargepin.lab.bench import _BareArm, _ChargepinArm
from chargepin.lab.testbed import Testbed
from chargepin.radio.keystore import SqliteKeyStore

MODULES = (hci, l2cap, att, smp)
PACKETS = (hci.HCI_Packet, l2cap.L2CAP_PDU, l2cap.L2CAP_Control_Frame, att.ATT_PDU, smp.SMP_Command)
"""What Bumble formats for its debug log (an Address's __str__ is no formatting: it is parsed)."""


def _packet_classes() -> list[type]:
    return [
        cls
        for module in MODULES
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, PACKETS) and "__str__" in cls.__dict__
    ]


class Formatting:
    """Switch Bumble's packet formatting off and on again (this process only). HCI_Object's
    field formatting (`format_fields`) stays: the packets' __str__ is what calls it."""

    def __init__(self) -> None:
        self.originals = {cls: cls.__dict__["__str__"] for cls in _packet_classes()}

    def off(self) -> None:
        for cls in self.originals:
            cls.__str__ = _empty  # type: ignore[method-assign,assignment]

    def on(self) -> None:
        for cls, method in self.originals.items():
            cls.__str__ = method  # type: ignore[method-assign]


def _empty(_self: object) -> str:
    return ""


def _category(filename: str, name: str) -> str:
    if "poll" in name and "select" in name:
        return IDLE
    if "/chargepin/" in filename:
        return "chargepin"
    if "/bumble/controller.py" in filename or "/bumble/link.py" in filename:
        return "bumble: virtual controller"
    if "/bumble/" in filename:
        if name in ("__str__", "__repr__", "color", "to_string", "name_or_number") or (
            "colors.py" in filename
        ):
            return "bumble: debug formatting"
        return "bumble: host, SMP, L2CAP, ATT"
    if "sqlite3" in name:
        return "sqlite3 (incl. fsync)"
    if "/cryptography/" in filename or "_rust" in name or "ec." in name:
        return "cryptography"
    if "/asyncio/" in filename or "select" in name or "epoll" in name:
        return "asyncio event loop"
    return "other (stdlib, logging)"


IDLE = "idle (waiting in epoll)"


def shares(stats: pstats.Stats) -> dict[str, float]:
    """Own time (tottime) by category, seconds."""
    totals: dict[str, float] = defaultdict(float)
    for (filename, _line, name), row in stats.stats.items():  # type: ignore[attr-defined]
        totals[_category(filename, name)] += row[2]
    return dict(totals)


async def _arms(directory: Path) -> tuple[Testbed, _ChargepinArm, _BareArm]:
    bed = Testbed(directory)
    arm = await _ChargepinArm.start(bed)
    bare = _BareArm(arm.pin.passkey)
    await bare.pair.start()
    await arm.pairing_round()
    await bare.pairing_round()
    return bed, arm, bare


async def profile(directory: Path, rounds: int) -> None:
    bed, arm, bare = await _arms(directory)
    try:
        for label, round_ in (("chargepin", arm.pairing_round), ("bare", bare.pairing_round)):
            profiler = cProfile.Profile()
            timings = []
            for _ in range(rounds):
                profiler.enable()
                sample = await round_()
                profiler.disable()
                timings.append(sample["pair"] * 1000)
            stats = pstats.Stats(profiler)
            by_category = shares(stats)
            idle = by_category.pop(IDLE, 0.0)
            total = sum(by_category.values())
            print(f"\n{label}: {rounds} rounds, median pair() {statistics.median(timings):.1f} ms;")
            print(
                f"  busy time per round (the whole round: connect, pair, disconnect): "
                f"{total / rounds * 1000:.1f} ms, idle {idle / rounds * 1000:.1f} ms"
            )
            for category, seconds in sorted(by_category.items(), key=lambda kv: -kv[1]):
                print(f"  {category:34s} {seconds / rounds * 1000:6.2f} ms  {seconds / total:6.1%}")
            if label == "chargepin":
                ours = [
                    (row[2], f"{Path(filename).name}:{line} {name}")
                    for (filename, line, name), row in stats.stats.items()  # type: ignore[attr-defined]
                    if "/chargepin/" in filename
                ]
                print("  chargepin's own functions, top 8 by own time per round:")
                for seconds, where in sorted(ours, reverse=True)[:8]:
                    print(f"    {seconds / rounds * 1000:6.3f} ms  {where}")
    finally:
        await bare.pair.stop()
        await bed.close()


async def formatting(directory: Path, rounds: int) -> None:
    switch = Formatting()
    bed, arm, bare = await _arms(directory)
    samples: dict[str, list[float]] = defaultdict(list)
    arms: dict[str, Callable[[], Any]] = {
        "chargepin": arm.pairing_round,
        "bare": bare.pairing_round,
    }
    try:
        for _ in range(rounds):
            for state in ("formatted", "not formatted"):
                (switch.on if state == "formatted" else switch.off)()
                for label, round_ in arms.items():
                    sample = await round_()
                    samples[f"{label}, {state}"].append(sample["pair"] * 1000)
        switch.on()
    finally:
        switch.on()
        await bare.pair.stop()
        await bed.close()
    print(f"\n{rounds} rounds each, interleaved; load average {os.getloadavg()[0]:.2f}")
    medians = {key: statistics.median(values) for key, values in samples.items()}
    for key, value in medians.items():
        print(f"  median pair(), {key:26s} {value:6.2f} ms")
    for state in ("formatted", "not formatted"):
        ratio = medians[f"chargepin, {state}"] / medians[f"bare, {state}"]
        print(f"  ratio chargepin / bare, {state}: {ratio:.3f}")


async def window(directory: Path, rounds: int) -> None:
    """chargepin's own steps inside `pair()`, each timed where it runs (wrapped in this process
    only), per round: what of the chargepin arm's median is ours."""
    from chargepin.charger import pairing
    from chargepin.radio.keystore import SqliteKeyStore as Store

    spent: dict[str, float] = defaultdict(float)

    def timed(owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)
        if inspect.iscoroutinefunction(original):

            async def wrapper_async(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    spent[label] += time.perf_counter() - start

            setattr(owner, name, wrapper_async)
        else:

            def wrapper(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    spent[label] += time.perf_counter() - start

            setattr(owner, name, wrapper)

    timed(pairing.PairingGuard, "on_request", "gate (Pairing Request)")
    timed(pairing._PasskeyDisplay, "generate_passkey", "passkey from the epoch")
    timed(pairing.PairingGuard, "on_complete", "pairing_ok event (commit)")
    timed(Store, "update", "bond writes (charger + phone)")
    timed(Store, "get_resolving_keys", "resolving lists (charger + phone)")
    bed, arm, bare = await _arms(directory)
    pairs = []
    try:
        spent.clear()
        for _ in range(rounds):
            pairs.append((await arm.pairing_round())["pair"] * 1000)
            await bare.pairing_round()
    finally:
        await bare.pair.stop()
        await bed.close()
    print(f"load average {os.getloadavg()[0]:.2f}; median pair() {statistics.median(pairs):.1f} ms")
    for label, seconds in spent.items():
        print(f"  {label:36s} {seconds / rounds * 1000:6.3f} ms per pairing")
    print(f"  {'total':36s} {sum(spent.values()) / rounds * 1000:6.3f} ms per pairing")


def _random_keys() -> PairingKeys:
    return PairingKeys(
        address_type=hci.AddressType.RANDOM_DEVICE,
        ltk=PairingKeys.Key(os.urandom(16), authenticated=True),
        irk=PairingKeys.Key(os.urandom(16)),
    )


async def keystore(directory: Path, rounds: int) -> None:
    """What Bumble's `update_keys` does on the charger after a pairing (store the bond, then
    rebuild the resolving list), with 1 to 1,000 bonds: KeyStore's list against the kept one."""
    print(f"load average {os.getloadavg()[0]:.2f}; median of {rounds} bonds stored, ms")
    for bonds in (1, 10, 100, 1000):
        connection = sqlite3.connect(directory / f"bonds-{bonds}.db", isolation_level=None)
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        store = SqliteKeyStore(connection)
        connection.execute("BEGIN")
        for _ in range(bonds - 1):
            await store.update(random_static_address(), _random_keys())
        connection.execute("COMMIT")
        medians = {}
        for label, resolving in (
            ("KeyStore.get_resolving_keys", functools.partial(KeyStore.get_resolving_keys, store)),
            ("SqliteKeyStore's kept list", store.get_resolving_keys),
        ):
            await store.get_resolving_keys()
            samples = []
            for _ in range(rounds):
                name = random_static_address()
                start = time.perf_counter()
                await store.update(name, _random_keys())
                await resolving()
                samples.append((time.perf_counter() - start) * 1000)
                await store.delete(name)
            medians[label] = statistics.median(samples)
        connection.close()
        print(f"  {bonds:5d} bonds: " + ", ".join(f"{k} {v:.2f}" for k, v in medians.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("profile", "formatting", "keystore", "window"))
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    logging.getLogger("bumble").setLevel(logging.ERROR)
    print(f"load average before: {os.getloadavg()}", file=sys.stderr)
    modes = {"profile": profile, "formatting": formatting, "keystore": keystore, "window": window}
    run = modes[args.mode]
    with tempfile.TemporaryDirectory(prefix="chargepin-profile-") as tmp:
        asyncio.run(run(Path(tmp), args.rounds))


if __name__ == "__main__":
    main()
