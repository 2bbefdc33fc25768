"""Installs by role: each package needs only its extra, and a missing extra is one clear line.

The extras are declared twice, by distribution in pyproject.toml and by import name in
`chargepin.extras` (which the CLI checks before registering a role's commands): these tests keep
the two in agreement and check the imports of each package against its extra. The fresh-venv
install of `chargepin[charger]` is tests/cli/test_install_by_role.py.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from chargepin.cli import add_not_installed
from chargepin.extras import APP, CHARGER, EXTRAS, FLEET, LAB, PHONE, Extra

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "chargepin"
BASE = ("cryptography", "typer", "rich")
"""Import names of `[project.dependencies]`: what every role has."""

INDIRECT = {"pydantic": "fastapi", "starlette": "fastapi", "click": "typer"}
"""Modules our code imports that arrive with a distribution of the extra, not on their own."""

HEAVY = ("fastapi", "starlette", "sqlalchemy", "alembic", "uvicorn", "psycopg", "matplotlib")
HEAVY += ("hypothesis", "psutil", "httpx", "segno", "argon2", "email_validator")
"""What a charger install does not have, so its commands must not import it."""


def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_extras() -> dict[str, set[str]]:
    """Each extra of pyproject.toml as the set of distributions it installs (self-references
    such as `chargepin[charger,phone]` expanded)."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]

    def expand(extra: str) -> set[str]:
        names: set[str] = set()
        for requirement in declared[extra]:
            match = re.match(r"([A-Za-z0-9._-]+)(?:\[([^\]]*)\])?", requirement)
            assert match is not None, requirement
            name, inner = match.groups()
            if normalized(name) == "chargepin":
                for other in (inner or "").split(","):
                    names |= expand(other.strip())
            else:
                names.add(normalized(name))
        return names

    return {extra: expand(extra) for extra in declared}


def distributions_of(extra: Extra) -> set[str]:
    provided = packages_distributions()
    return {normalized(dist) for module in extra.modules for dist in provided[module]}


@pytest.mark.parametrize("extra", EXTRAS, ids=lambda extra: extra.name)
def test_each_extra_lists_the_modules_of_its_pyproject_distributions(extra: Extra) -> None:
    assert distributions_of(extra) == pyproject_extras()[extra.name]


def test_all_is_every_role_and_the_lab_is_the_whole_product() -> None:
    extras = pyproject_extras()
    every_role = set().union(*(extras[extra.name] for extra in EXTRAS))
    assert extras["all"] == every_role == extras["lab"]
    assert set(LAB.modules) >= set(CHARGER.modules) | set(PHONE.modules) | set(FLEET.modules)


def third_party_imports(package: str) -> tuple[set[str], set[str]]:
    """Top-level third-party modules the package's code imports, and the chargepin packages
    (or top-level modules) it imports, read from the source."""
    outside: set[str] = set()
    ours: set[str] = set()
    folder = PACKAGE / package
    files = sorted(folder.rglob("*.py")) if folder.is_dir() else [PACKAGE / f"{package}.py"]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "chargepin":
                    if len(parts) > 1 and parts[1] != package:
                        ours.add(parts[1])
                elif parts[0] not in sys.stdlib_module_names:
                    outside.add(parts[0])
    return outside, ours


def imports_with_what_they_import(package: str) -> set[str]:
    """Third-party modules a package imports, directly or through the chargepin packages it
    imports: what an install of its role must have."""
    seen: set[str] = set()
    modules: set[str] = set()
    todo = [package]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        outside, ours = third_party_imports(current)
        modules |= outside
        todo.extend(ours)
    return {INDIRECT.get(module, module) for module in modules}


@pytest.mark.parametrize(
    ("package", "extra"),
    [
        ("core", None),
        ("charger", CHARGER),
        ("radio", CHARGER),
        ("phone", PHONE),
        ("fleet", FLEET),
        ("app", APP),
        ("lab", LAB),
        ("cli", None),
    ],
)
def test_each_package_imports_only_the_base_and_its_extra(
    package: str, extra: Extra | None
) -> None:
    """`cli` (the assembler) needs only the base: it imports a role's CLI once its extra is
    there, which the static reading cannot see, so its imports of role packages are skipped."""
    if package == "cli":
        outside, _ = third_party_imports("cli")
        allowed = set(BASE)
        assert {INDIRECT.get(module, module) for module in outside} <= allowed
        return
    allowed = set(BASE) | set(extra.modules if extra else ())
    assert imports_with_what_they_import(package) <= allowed


def test_a_missing_extra_is_one_line_naming_it_whatever_was_typed() -> None:
    """The stand-in for a role that is not installed answers every invocation, --help too."""
    app = typer.Typer(no_args_is_help=True)
    absent = Extra("fleet", ("chargepin_no_such_module",))
    assert absent.missing() == ["chargepin_no_such_module"]
    add_not_installed(app, "fleet", absent)
    add_not_installed(app, "demo", absent, group=False)
    runner = CliRunner()

    for args in (["fleet"], ["fleet", "serve", "--port", "8000"], ["fleet", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert result.stdout == ""
        assert result.stderr == (
            "error: the fleet commands need chargepin[fleet]: pip install 'chargepin[fleet]'\n"
        )
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 2
    assert result.stderr == (
        "error: the demo command needs chargepin[fleet]: pip install 'chargepin[fleet]'\n"
    )
    listing = runner.invoke(app, ["--help"], env={"COLUMNS": "120"})
    assert "Not installed: pip install 'chargepin[fleet]'." in listing.stdout


MODULES_AFTER = """
import json, sys
from chargepin.cli import app
try:
    app(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def modules_loaded_by(*args: str) -> set[str]:
    """Top-level modules loaded after `chargepin ARGS` ran in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", MODULES_AFTER, *args], capture_output=True, text=True, check=True
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_the_charger_commands_load_no_fleet_or_lab_module(tmp_path: Path) -> None:
    state = str(tmp_path / "charger.db")
    spec = ["--model", "Pulsar Max", "--firmware", "6.11.2", "--produced", "2025-09-01"]
    for args in (
        ["charger", "init", "--state", state, "--serial", "CP-1", *spec],
        ["charger", "info", "--state", state],
        ["charger", "pin", "--state", state],
        ["--help"],
    ):
        loaded = modules_loaded_by(*args)
        assert "chargepin" in loaded
        assert loaded.isdisjoint(HEAVY), (args, sorted(loaded & set(HEAVY)))
    assert (tmp_path / "charger.db").exists()


def test_importing_the_charger_package_loads_no_fleet_or_lab_module() -> None:
    code = "import sys, chargepin.charger, chargepin.charger.cli; print(' '.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    loaded = {name.split(".")[0] for name in result.stdout.split()}
    assert result.returncode == 0, result.stderr
    assert "bumble" in loaded and loaded.isdisjoint(HEAVY)
