"""The fleet service: accounts, the factory line, commissioning, members, the PIN vault, tickets.

Import the modules themselves (`chargepin.fleet.app.create_app`, `chargepin.fleet.operations`, ...):
this package imports none eagerly, so that `chargepin fleet --help` and `chargepin.fleet.cli`
do not load FastAPI and SQLAlchemy (about half a second) before a command needs them. It needs
the `chargepin[fleet]` extra (`chargepin.extras.FLEET`).
"""
