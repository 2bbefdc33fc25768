"""Exactly once: the fleet's commands a charger has applied, and what a repeat gets.

Each outbox command has an identity (`op`, core/tickets.py: 16 random octets in hex) that every
ticket sealed for it carries. A command whose ticket reached the charger but whose answer was
lost (a gateway killed, a socket dropped) is sent again, sealed for a new challenge; the charger
must then answer it and apply nothing (docs/OCPP.md, "What a killed gateway costs"). The record
of applied ops is the charger's, kept in the same commit as the state change it records
(charger/store.py); the simulated stations of the tests keep it too (tests/helpers/
ocpp_station.py), so both decide with `decide` here.

The record is bounded: the last MAX_APPLIED_OPS ops, oldest dropped first. Why 64 is enough: the
fleet delivers a charger's open commands one at a time, oldest first (fleet/csms/outbox.py
`next_for`), and a command stays open (`sent`) until its answer is committed, so a command
whose answer was lost is the next one any gateway sends that charger: no later command is
applied between the first application of an op and its repeat. Bluetooth tickets carry no op.
A charger holds at most 20 open commands (the outbox cap, `MAX_OPEN_PER_CHARGER`), each of
which could at worst have been applied unanswered once; 64 is three times that, for 64 x 32
octets of state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from chargepin.core.errors import InvalidConfig
from chargepin.core.tickets import op_value

MAX_APPLIED_OPS: Final = 64
"""Ops the charger remembers (module docstring: why this is enough)."""


class Decision(StrEnum):
    """What the charger does with a valid, authorised ticket."""

    APPLY = "apply"
    """Apply it (and remember its op, if it has one, in the same commit)."""
    ANSWER = "answer"
    """Its op was applied before: answer with a fresh receipt of the current state, signed for
    this ticket's challenge, and apply nothing (no state change, no event, no link dropped)."""


@dataclass(frozen=True)
class AppliedOps:
    """The ops applied, oldest first, at most MAX_APPLIED_OPS, each once."""

    ops: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.ops, tuple):
            raise InvalidConfig(f"applied ops must be a tuple, got {type(self.ops).__name__}")
        if len(self.ops) > MAX_APPLIED_OPS:
            raise InvalidConfig(
                f"applied ops hold at most {MAX_APPLIED_OPS} ops, got {len(self.ops)}"
            )
        for value in self.ops:
            op_value(value)
        if len(set(self.ops)) != len(self.ops):
            raise InvalidConfig("applied ops name an op more than once")

    def __contains__(self, op: object) -> bool:
        return op in self.ops

    def after(self, op: str | None) -> AppliedOps:
        """The record once `op` is applied: appended, the oldest dropped past the bound."""
        if op is None or op in self.ops:
            return self
        return AppliedOps((*self.ops, op_value(op))[-MAX_APPLIED_OPS:])

    def to_text(self) -> str:
        """The record as stored: a JSON list of the ops, oldest first."""
        return json.dumps(list(self.ops), separators=(",", ":"))

    @classmethod
    def from_text(cls, text: str) -> AppliedOps:
        """The record `to_text` wrote; InvalidConfig (with what is wrong) for anything else."""
        try:
            value = json.loads(text)
        except (TypeError, ValueError, RecursionError):
            raise InvalidConfig("applied ops are not a JSON list") from None
        if not isinstance(value, list) or not all(isinstance(op, str) for op in value):
            raise InvalidConfig("applied ops are not a JSON list of ops")
        return cls(tuple(value))


def decide(applied: AppliedOps, op: str | None) -> Decision:
    """Apply a ticket unless it carries an op already applied (then only answer it).

    A ticket without an op (a phone's, over Bluetooth; a fleet talking to older firmware) is
    always applied: its challenge makes it single-use, and that is all it promises."""
    if op is not None and op in applied:
        return Decision.ANSWER
    return Decision.APPLY
