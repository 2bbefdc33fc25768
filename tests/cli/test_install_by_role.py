"""`pip install 'chargepin[charger]'` in a fresh venv gives a working charger, and nothing else.

A clean venv (no system site-packages, no pip of its own) gets a regular, non-editable install of
this checkout with the charger's extra: the wheel pip builds of a copy of the checkout (once per
run), installed with its extra; pip reaches the package index for the dependencies (its cache
makes a rerun quick) and skips compiling them to bytecode (Python compiles what it imports).
Each venv is made once per run and shared by the workers of pytest-xdist that run this
module's tests (a lock file; docs/PERFORMANCE.md, "The suite's time").

Then the charger's whole life runs from that venv: the factory's `charger init`, the service
console's `charger pin` and `charger info`, and `charger run` on a virtual radio (also from that
venv), paired with by a phone from the development venv. The roles not installed answer with the
extra to install, in one line and exit code 2. The same for the cloud's `chargepin[fleet]`: no
Bluetooth stack, and its migrations ship in the wheel.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from chargepin.core.epochs import epoch_pin
from chargepin.lab.ports import free_ports

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SECRET_HEX = "5e" * 32
SERIAL = "CP-ROLE-1"
READY_TIMEOUT = 30.0
NOT_IN_A_CHARGER = (
    "fastapi",
    "starlette",
    "sqlalchemy",
    "alembic",
    "uvicorn",
    "psycopg",
    "matplotlib",
    "hypothesis",
    "psutil",
    "httpx",
    "segno",
    "argon2",
    "email_validator",
)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on the file `path`, across the processes of this run."""
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def built_wheel(base: Path) -> Path:
    """The wheel pip builds of a copy of this checkout, built once in `base`."""
    wheels = base / "wheels"
    with locked(base / "wheels.lock"):
        if not wheels.exists():
            source = base / "source"
            shutil.rmtree(source, ignore_errors=True)
            # A copy, so that building the wheel leaves nothing in the working tree.
            shutil.copytree(
                ROOT / "src",
                source / "src",
                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
            )
            for name in ("pyproject.toml", "README.md"):
                shutil.copy(ROOT / name, source / name)
            partial = base / "wheels.partial"
            build = subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(partial),
                 str(source)],
                capture_output=True,
                text=True,
            )  # fmt: skip
            assert build.returncode == 0, build.stderr
            partial.rename(wheels)
        (wheel,) = wheels.glob("chargepin-*.whl")
        return wheel


def fresh_install(base: Path, extra: str) -> Path:
    """A fresh venv with `chargepin[EXTRA]` installed from the wheel of this checkout; made
    once in `base`, whichever process asks first (the others wait for it)."""
    venv = base / f"venv-{extra}"
    made = venv / ".chargepin-installed"
    wheel = built_wheel(base)
    with locked(base / f"venv-{extra}.lock"):
        if made.exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)  # a set-up that failed half-way
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        python = venv / "bin" / "python"
        install = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(python),
                "install",
                "-q",
                "--no-compile",
                f"{wheel}[{extra}]",
            ],
            capture_output=True,
            text=True,
        )
        assert install.returncode == 0, install.stderr
        made.touch()
    return venv


@pytest.fixture(scope="module")
def install_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for the run: pytest-xdist's workers have base temporary directories in
    one parent, so they share the venvs made there (and each run gets its own)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    directory = shared / "install-by-role"
    directory.mkdir(exist_ok=True)
    return directory


@pytest.fixture(scope="module")
def charger_venv(install_dir: Path) -> Path:
    return fresh_install(install_dir, "charger")


@pytest.fixture(scope="module")
def fleet_venv(install_dir: Path) -> Path:
    return fresh_install(install_dir, "fleet")


def modules_found(venv: Path, *modules: str) -> list[str]:
    """Which of `modules` the venv's interpreter can import (found, not imported)."""
    code = (
        "import importlib.util, sys; "
        "print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m)))"
    )
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code, *modules],
        capture_output=True,
        text=True,
        check=True,
    )
    return found.stdout.split()


def chargepin(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "chargepin"), *args], capture_output=True, text=True, timeout=60
    )


class Child:
    """A long-running command of the fresh venv, awaited by its READY line (with a deadline)."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def ready(self) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while (remaining := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.process.stdout], [], [], remaining)
            if not readable:
                break
            line = self.process.stdout.readline()
            if not line:
                break
            if line.startswith("READY "):
                return line.removeprefix("READY ").strip()
        self.process.kill()
        _, stderr = self.process.communicate(timeout=10)
        raise AssertionError(f"{self.process.args} not READY: {stderr}")

    def stop(self) -> int:
        """SIGTERM, which the services answer with a clean exit (0)."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=10)


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in reversed(started):
            child.kill()


def test_the_charger_install_has_no_fleet_or_lab_dependency(charger_venv: Path) -> None:
    found = modules_found(charger_venv, "bumble", "cryptography", *NOT_IN_A_CHARGER)
    assert found == ["bumble", "cryptography"]


def test_init_pin_info_and_run_work_from_the_charger_install(
    charger_venv: Path, tmp_path: Path, children: list[Child]
) -> None:
    state = tmp_path / "charger.db"
    spec = ["--model", "Pulsar Max", "--firmware", "6.11.2", "--produced", "2025-09-01"]
    init = chargepin(
        charger_venv, "charger", "init", "--state", str(state), "--serial", SERIAL, *spec,
        "--secret", SECRET_HEX,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    assert f"provisioned {SERIAL}" in init.stdout

    pin = chargepin(charger_venv, "charger", "pin", "--state", str(state))
    assert pin.returncode == 0, pin.stderr
    assert pin.stdout.strip() == epoch_pin(bytes.fromhex(SECRET_HEX), SERIAL, 0).digits

    info = chargepin(charger_venv, "charger", "info", "--state", str(state), "--json")
    assert info.returncode == 0, info.stderr
    assert (json.loads(info.stdout)["serial"], json.loads(info.stdout)["bonds"]) == (SERIAL, [])

    charger_port, phone_port = free_ports(2)
    bin_chargepin = str(charger_venv / "bin" / "chargepin")
    radio = Child([bin_chargepin, "radio", "--ports", f"{charger_port},{phone_port}"])
    children.append(radio)
    assert radio.ready() == f"ports={charger_port},{phone_port}"
    charger_transport = f"tcp-client:127.0.0.1:{charger_port}"
    daemon = Child(
        [bin_chargepin, "charger", "run", "--state", str(state), "--transport", charger_transport]
    )
    children.append(daemon)
    assert f"serial={SERIAL}" in daemon.ready()

    # A phone from the development venv pairs with the PIN: the charger really serves.
    phone = ["--transport", f"tcp-client:127.0.0.1:{phone_port}", "--bonds", str(tmp_path / "p.db")]
    paired = subprocess.run(
        [
            sys.executable,
            "-m",
            "chargepin.cli",
            "phone",
            "pair",
            SERIAL,
            "--pin",
            pin.stdout.strip(),
            *phone,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert paired.returncode == 0, paired.stderr
    assert paired.stdout.strip() == f"paired with {SERIAL} (PIN used)"

    assert daemon.stop() == 0
    assert radio.stop() == 0
    info = chargepin(charger_venv, "charger", "info", "--state", str(state), "--json")
    assert [bond["authenticated"] for bond in json.loads(info.stdout)["bonds"]] == [True]


def needs(what: str, extra: str) -> str:
    """The line `chargepin` prints for a role whose extra is not installed."""
    return f"error: {what} chargepin[{extra}]: pip install 'chargepin[{extra}]'\n"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["fleet", "serve", "--port", "8000"], needs("the fleet commands need", "fleet")),
        (["fleet", "--help"], needs("the fleet commands need", "fleet")),
        (["lab", "report", "--trials", "1"], needs("the lab commands need", "lab")),
        (["bench", "pairing"], needs("the bench commands need", "lab")),
        (["demo"], needs("the demo command needs", "lab")),
        (
            ["phone", "login", "--fleet", "http://127.0.0.1:1"],
            needs("the phone commands need", "phone"),
        ),
    ],
)
def test_a_role_not_installed_says_which_extra_to_install(
    charger_venv: Path, args: list[str], line: str
) -> None:
    result = chargepin(charger_venv, *args)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", line)


def test_help_lists_the_charger_and_marks_the_rest_not_installed(charger_venv: Path) -> None:
    result = chargepin(charger_venv, "--help")
    assert result.returncode == 0, result.stderr
    assert "The charger: provision, inspect, run the daemon." in result.stdout
    assert "Not installed: pip install 'chargepin[fleet]'." in result.stdout


def test_the_fleet_install_migrates_and_provisions_without_bluetooth(
    fleet_venv: Path, tmp_path: Path
) -> None:
    """The cloud's install: its commands run (migrations ship in the wheel), Bumble is absent."""
    assert modules_found(fleet_venv, "bumble", "httpx", "matplotlib", "fastapi") == ["fastapi"]
    db = ["--db", f"sqlite:///{tmp_path / 'fleet.db'}"]
    keys = ["--vault-key-file", str(tmp_path / "vault-key.json")]
    migrate = chargepin(fleet_venv, "fleet", "migrate", *db)
    assert migrate.returncode == 0, migrate.stderr
    provision = chargepin(
        fleet_venv, "fleet", "provision", *db, *keys, "--count", "1", "--model", "Pulsar Max",
        "--firmware", "6.11.2", "--produced", "2025-09-01", "--out", str(tmp_path / "factory"),
    )  # fmt: skip
    assert provision.returncode == 0, provision.stderr
    assert len(list((tmp_path / "factory").glob("*.json"))) == 1

    result = chargepin(fleet_venv, "charger", "init", "--state", str(tmp_path / "c.db"))
    assert (result.returncode, result.stderr) == (2, needs("the charger commands need", "charger"))
