"""The `chargepin` command run in-process, as the CLI tests drive it."""

from __future__ import annotations

from collections.abc import Mapping

from typer.testing import CliRunner

from chargepin.cli import app

runner = CliRunner()


def invoke(*args: str, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """Run `chargepin ARGS` in-process (with `env` added to the environment); (exit code,
    stdout, stderr). An exception other than the command's exit is raised as itself."""
    result = runner.invoke(app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr
