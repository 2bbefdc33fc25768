"""chargepin: Bluetooth LE PIN protection for EV chargers."""

from __future__ import annotations

__version__ = "0.1.0"
