"""A charger's security state as its state file holds it, read in one go for the lab's checks.

The crash loop checks that none of it went backwards across a kill; the fuzzer and the replay
attack that a refused write or ticket moved none of it. They compare the parts each promises
(`SecurityState.ticket_state`: what only an owner ticket may change).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chargepin.charger.store import StateStore
from chargepin.core.lockout import LockoutState
from chargepin.core.pin import Pin
from chargepin.radio.keystore import BondInfo


@dataclass(frozen=True)
class SecurityState:
    """PIN configuration, lockout, the failure, lock and success counters, and the bonds."""

    pin_enabled: bool
    epoch: int
    generation: int  # the PIN generation (a re-key moves it)
    pin: Pin  # the PIN pairing must use now
    custom_pin: Pin | None
    lockout: LockoutState
    failures: int  # "pairing_failed" counter: a total, never pruned
    locks: int  # "locked" counter
    bonds: tuple[BondInfo, ...]  # by address
    successes: int = 0  # "pairing_ok" counter: committed before each bond it reports
    pin_changes: int = 0  # "pin_changed" counter: one per applied change_pin, in its commit
    bond_removals: int = 0  # "bond_removed" counter: one per bond an owner ticket removed

    @classmethod
    def of(cls, store: StateStore) -> SecurityState:
        """The state of an open store."""
        counters = store.counters()
        return cls(
            pin_enabled=store.pin_enabled,
            epoch=store.epoch,
            generation=store.generation,
            pin=store.current_pin(),
            custom_pin=store.custom_pin,
            lockout=store.lockout_state,
            failures=counters["pairing_failed"],
            locks=counters["locked"],
            bonds=tuple(sorted(store.keystore.list_bonds(), key=lambda bond: bond.address)),
            successes=counters["pairing_ok"],
            pin_changes=counters["pin_changed"],
            bond_removals=counters["bond_removed"],
        )

    @classmethod
    def read(cls, path: Path) -> SecurityState:
        """Open the state file at `path` as the service console does and read its state."""
        with StateStore.open(path) as store:
            return cls.of(store)

    @property
    def addresses(self) -> tuple[str, ...]:
        """The bonded peers' addresses, sorted."""
        return tuple(bond.address for bond in self.bonds)

    @property
    def ticket_state(self) -> tuple[bool, int, int, Pin, Pin | None, tuple[BondInfo, ...]]:
        """What only an owner ticket may change: the PIN configuration and the bonds (a failed
        pairing moves the epoch and the lockout on its own)."""
        return (
            self.pin_enabled,
            self.epoch,
            self.generation,
            self.pin,
            self.custom_pin,
            self.bonds,
        )
