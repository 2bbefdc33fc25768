"""The charging point the daemon controls: the EVSE side of start, stop, limit and cable lock.

On a real charger this drives the pilot signal and the contactor through the board's I/O; here
it keeps the state the protected status characteristic reports, in memory, because charging
sessions do not outlive the power supply. Listeners hear every change (status notifications).
"""

from __future__ import annotations

from collections.abc import Callable

from chargepin.core.protocol import (
    MAX_CURRENT_A,
    ChargerStatus,
    ChargingState,
    ControlCommand,
    ControlOp,
)


class ChargingPoint:
    """The state of one charging outlet."""

    def __init__(self, current_limit: int = MAX_CURRENT_A) -> None:
        self._status = ChargerStatus(ChargingState.IDLE, current_limit, False, 0)
        self._listeners: list[Callable[[ChargerStatus], None]] = []

    @property
    def status(self) -> ChargerStatus:
        return self._status

    def subscribe(self, listener: Callable[[ChargerStatus], None]) -> None:
        self._listeners.append(listener)

    def apply(self, command: ControlCommand) -> ChargerStatus:
        """Carry out one control command (already decoded and range-checked)."""
        s = self._status
        if command.op is ControlOp.START:
            # IEC 61851: the connector is locked for the whole charging session.
            s = ChargerStatus(ChargingState.CHARGING, s.current_limit, True, s.energy_wh)
        elif command.op is ControlOp.STOP:
            s = ChargerStatus(ChargingState.IDLE, s.current_limit, s.cable_locked, s.energy_wh)
        elif command.op is ControlOp.SET_CURRENT_LIMIT and command.amps is not None:
            s = ChargerStatus(s.state, command.amps, s.cable_locked, s.energy_wh)
        elif command.op is ControlOp.LOCK_CABLE:
            s = ChargerStatus(s.state, s.current_limit, True, s.energy_wh)
        elif command.op is ControlOp.UNLOCK_CABLE:
            if s.state is ChargingState.CHARGING:
                raise ValueError("cannot unlock the cable while charging; stop charging first")
            s = ChargerStatus(s.state, s.current_limit, False, s.energy_wh)
        self._status = s
        for listener in self._listeners:
            listener(s)
        return s
