"""Child process of the exactly-once kill -9 test: applies re-key tickets forever, each with
its own op, through owner_actions.apply_ticket (one commit per ticket).

Run as `python applied_ops_child.py STATE_FILE`. The ticket that moves the charger to
generation g carries op g as 32 hex digits; only after the commit does it print "g".
"""

from __future__ import annotations

import secrets
import sys
import time

from chargepin.charger.owner_actions import apply_ticket
from chargepin.charger.store import StateStore
from chargepin.core.tickets import Action, issue_ticket, seal_ticket


def op_of(generation: int) -> str:
    """The op of the ticket that moved the charger to `generation`."""
    return f"{generation:032x}"


def main(path: str) -> None:
    """Loop until killed."""
    store = StateStore.open(path)
    serial = store.identity.serial
    while True:
        challenge, now = secrets.token_bytes(16), time.time()
        op = op_of(store.generation + 1)
        ticket = issue_ticket(serial, challenge, Action.REKEY, {"op": op}, now)
        apply_ticket(store, seal_ticket(store.secret, ticket), challenge, now, [])
        sys.stdout.write(f"{store.generation}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1])
