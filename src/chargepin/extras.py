"""Which optional part of chargepin needs which third-party modules: the install extras.

A charger installs `chargepin[charger]`, a phone `chargepin[phone]`, the cloud
`chargepin[fleet]`, a security lab `chargepin[lab]` (everything, since it runs the whole
product), a developer `chargepin[all]`. The base install is the core rules and the command line
(cryptography, typer, rich). `chargepin` registers a role's commands only when its modules are
there, and otherwise a command that says which extra to install (`MissingExtra`).

Each tuple lists the import names of the distributions of that extra in pyproject.toml; a test
(tests/cli/test_cli_extras.py) checks the two agree.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from chargepin.core.errors import ChargepinError


@dataclass(frozen=True)
class Extra:
    """An extra of pyproject.toml and the top-level modules its distributions provide."""

    name: str
    modules: tuple[str, ...]

    def missing(self) -> list[str]:
        """The modules of this extra that cannot be imported here (found, never imported)."""
        return [module for module in self.modules if importlib.util.find_spec(module) is None]

    def installed(self) -> bool:
        return not self.missing()


CHARGER = Extra("charger", ("bumble", "ocpp", "websockets"))
PHONE = Extra("phone", ("bumble", "httpx"))
FLEET = Extra(
    "fleet",
    (
        "fastapi",
        "sqlalchemy",
        "alembic",
        "argon2",
        "email_validator",
        "segno",
        "uvicorn",
        "psycopg",
        "ocpp",
        "websockets",
        "jinja2",
        "PIL",
        "zxingcpp",
        "python_multipart",
    ),
)
LAB = Extra(
    "lab",
    tuple(
        dict.fromkeys(
            (
                *CHARGER.modules,
                *PHONE.modules,
                *FLEET.modules,
                "matplotlib",
                "hypothesis",
                "psutil",
                "playwright",
            )
        )
    ),
)
APP = Extra("app", tuple(dict.fromkeys((*PHONE.modules, *FLEET.modules))))
"""`chargepin app`: the web app beside a radio, a phone serving the fleet's pages."""
EXTRAS = (CHARGER, PHONE, FLEET, APP, LAB)


class MissingExtra(ChargepinError):
    """A command whose extra is not installed; the message says which extra and how."""

    def __init__(self, command: str, extra: Extra, *, group: bool = True) -> None:
        need = "commands need" if group else "command needs"
        super().__init__(
            f"the {command} {need} chargepin[{extra.name}]: pip install 'chargepin[{extra.name}]'"
        )
        self.command = command
        self.extra = extra
