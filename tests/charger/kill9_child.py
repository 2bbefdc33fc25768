"""Child process of the kill -9 test: fails PIN attempts forever, one commit per attempt.

Run as `python kill9_child.py STATE_FILE`. Each attempt at time `BASE + STEP * epoch` goes
through the real lockout rules, then the new lockout state and the next epoch are saved in one
transaction; only after the commit does it print "<epoch> <lockout state as JSON>".
"""

from __future__ import annotations

import json
import sys

from chargepin.charger.store import StateStore
from chargepin.core.lockout import record_failure

BASE = 1_700_000_000.0
STEP = 7.0


def main(path: str) -> None:
    """Loop until killed."""
    store = StateStore.open(path)
    config = store.lockout_config
    while True:
        now = BASE + STEP * (store.epoch + 1)
        state = record_failure(config, store.lockout_state, now)
        with store.transaction():
            store.save_lockout_state(state)
            epoch = store.advance_epoch()
        sys.stdout.write(f"{epoch} {json.dumps(state.to_dict(), sort_keys=True)}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1])
