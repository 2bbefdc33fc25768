"""`chargepin lab crash-loop`: kill -9 the charger daemon in the middle of pairings and lockouts,
then check what its state file kept (docs/SECURITY.md, "Crash loop"); with `--power-cut`, each
kill also takes back every write the daemon had not fsynced.

- `oracle`: which promises of the state file a kill broke, from what the phones saw and what is
  on disk (pure);
- `disk`: what the state file holds after a kill, read with the daemon down;
- `workload`: the phones' seeded steps and the kill that lands among them;
- `loop`: the radio, the daemon child, the iterations;
- `restart`: the daemon restarted on the file after each kill must serve again;
- `power_cut`: the LD_PRELOAD shim that keeps a durable image of the file, and the cut;
- `report`: the records, the totals and the table.
"""

from chargepin.lab.crash_loop.disk import check_state, read_disk
from chargepin.lab.crash_loop.loop import crash_loop_report, run_crash_loop
from chargepin.lab.crash_loop.oracle import (
    ConfirmedBond,
    OnDisk,
    OwnerChange,
    StateCheck,
    Witness,
    bond_problems,
    judge,
)
from chargepin.lab.crash_loop.workload import CrashLoopError, stop_workload

__all__ = [
    "ConfirmedBond",
    "CrashLoopError",
    "OnDisk",
    "OwnerChange",
    "StateCheck",
    "Witness",
    "bond_problems",
    "check_state",
    "crash_loop_report",
    "judge",
    "read_disk",
    "run_crash_loop",
    "stop_workload",
]
