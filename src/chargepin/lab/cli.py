"""`chargepin lab ...`: the security lab (docs/SECURITY.md). Attacks against the real daemon on
the virtual radio, fuzzing of every byte-level input, and the kill -9 crash loop. Also the lab's
two commands at the top of `chargepin`: `chargepin demo` and `chargepin bench ...`
(docs/PERFORMANCE.md), which `chargepin.cli` registers under those names.

Each command prints a table, writes its measurements as JSON with `--json`, and exits 0 when the
charger held (or, for the classic profile's attacks, when the measurement matched what
docs/SECURITY.md says), 1 when it did not, 2 when the lab could not run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chargepin.cli_errors import reports_errors
from chargepin.core.profiles import DEFAULT_PROFILE, ProfileName

lab_app = typer.Typer(
    help="The security lab: attacks, fuzzing and crash loops, measured (docs/SECURITY.md).",
    no_args_is_help=True,
)
attack_app = typer.Typer(
    help="Attacks on the Bluetooth PIN by a Bumble central against the real charger daemon.",
    no_args_is_help=True,
)
lab_app.add_typer(attack_app, name="attack")


ProfileOption = Annotated[
    ProfileName, typer.Option("--profile", help="The charger's lockout and PIN profile.")
]
TrialsOption = Annotated[int, typer.Option("--trials", min=1, help="Independent trials.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed: the same seed, the same run.")]
JsonOption = Annotated[
    Path | None, typer.Option("--json", help="Write the measurements to this JSON file.")
]
BenchDbUrlOption = Annotated[
    str | None,
    typer.Option(
        help="A PostgreSQL server (postgresql+psycopg://user@host:port/db) to bench on: the "
        "bench makes a database of its own there and drops it after (default: a SQLite file).",
    ),
]
ConcurrencyOption = Annotated[int, typer.Option(min=1, help="Concurrent client workers.")]


ATTACKS: dict[str, tuple[str, int]] = {
    "passkey-bits": (
        "The adaptive static-passkey attack: keep the confirmed bits, flip the failing one.",
        10,
    ),
    "guess": ("Plain online guessing: one PIN per pairing attempt.", 10),
    "lockout-dos": (
        "Keep the charger locked: can a bonded owner and a newly invited phone still get in?",
        3,
    ),
    "parallel": (
        "8 attacker connections at once: no more failed attempts per window than the threshold.",
        3,
    ),
    "replay": ("Captured tickets replayed, tampered with and moved to another charger.", 3),
    "revoked-user": (
        "A member harvests what the API gives, is revoked, and tries every way back in.",
        1,
    ),
    "impersonate": (
        "A fake charger learns passkey bits from the app: before and after the presence proof.",
        3,
    ),
}
"""Each attack's command: its help line and its default number of trials."""


def _attack_command(name: str, summary: str, default_trials: int) -> None:
    """Register `chargepin lab attack NAME` (the options are the same for every attack)."""

    def command(
        profile: ProfileOption = DEFAULT_PROFILE,
        trials: TrialsOption = default_trials,
        seed: SeedOption = 1,
        json_path: JsonOption = None,
    ) -> None:
        from chargepin.lab.attacks.runner import run_attack

        raise typer.Exit(run_attack(name, profile, trials, seed, json_path))

    command.__doc__ = summary
    command.__name__ = name.replace("-", "_")
    attack_app.command(name)(reports_errors(command))


for _name, (_summary, _trials) in ATTACKS.items():
    _attack_command(_name, _summary, _trials)


@attack_app.command("fleet-http")
@reports_errors
def fleet_http(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="An empty database to attack (postgresql+psycopg://...); a fresh SQLite file if "
            "omitted.",
        ),
    ] = None,
    json_path: JsonOption = None,
    seed: SeedOption = 1,
    rounds: Annotated[
        int,
        typer.Option(
            min=10,
            help="Write-then-read rounds of the read-your-writes attack (the report's: 1,000).",
        ),
    ] = 1000,
) -> None:
    """Issue 9's attacks on the fleet service over HTTP: what each gets, against its limit."""
    from chargepin.lab.attacks.fleet_http import run_fleet_http

    raise typer.Exit(run_fleet_http(database_url, json_path, seed, rounds))


@lab_app.command("fuzz")
@reports_errors
def fuzz(
    minutes: Annotated[
        float, typer.Option("--minutes", min=0.01, help="How long to fuzz, all targets together.")
    ] = 1.0,
    seed: SeedOption = 1,
    json_path: JsonOption = None,
) -> None:
    """Fuzz every byte-level input (GATT writes, tickets, receipts, stickers, state files)."""
    from chargepin.lab.fuzz import run_fuzz

    raise typer.Exit(run_fuzz(minutes, seed, json_path))


@lab_app.command("crash-loop")
@reports_errors
def crash_loop(
    iterations: Annotated[
        int, typer.Option("--iterations", min=1, help="kill -9 / restart cycles.")
    ] = 100,
    seed: SeedOption = 1,
    json_path: JsonOption = None,
    power_cut: Annotated[
        bool,
        typer.Option(
            "--power-cut",
            help="Each kill is a power cut: the state keeps only what the daemon fsynced "
            "(an LD_PRELOAD shim, compiled with gcc at first use).",
        ),
    ] = False,
) -> None:
    """kill -9 the daemon at random moments of pairings and lockouts; check the state after."""
    from chargepin.lab.crash_loop import run_crash_loop

    raise typer.Exit(run_crash_loop(iterations, seed, json_path, power_cut))


@lab_app.command("report")
@reports_errors
def report(
    trials: TrialsOption = 20,
    seed: SeedOption = 1,
    json_path: JsonOption = None,
    plot_path: Annotated[
        Path | None,
        typer.Option("--plot", help="Write the recovery-probability plot to this PNG file."),
    ] = None,
) -> None:
    """The tables of docs/SECURITY.md: both attacks on PINs, both profiles, days to years."""
    from chargepin.lab.attacks.report import run_report

    raise typer.Exit(run_report(trials, seed, json_path, plot_path))


@lab_app.command("screenshots")
@reports_errors
def screenshots(
    out: Annotated[
        Path, typer.Option("--out", help="The folder of the PNGs (one per screen).")
    ] = Path("docs/app"),
    readme: Annotated[
        Path | None,
        typer.Option("--readme", help="The file whose gallery shows them (between its markers)."),
    ] = Path("README.md"),
    no_readme: Annotated[bool, typer.Option("--no-readme", help="Write the PNGs only.")] = False,
    chromium: Annotated[
        str | None,
        typer.Option("--chromium", help="The Chromium to drive (default: chromium on the PATH)."),
    ] = None,
) -> None:
    """Every screen of the web app at 360 px, in Chromium, as small PNGs and a README gallery."""
    from chargepin.lab.screenshots import run

    raise typer.Exit(run(out, None if no_readme else readme, chromium))


# ------------------------------------------------------------------------------- demo and bench

bench_app = typer.Typer(help="Benchmarks that measure the claims in docs/.", no_args_is_help=True)


@reports_errors
def demo(
    serve: Annotated[
        bool,
        typer.Option(
            "--serve", help="Then keep the app (/app/) with the story's data until Ctrl-C."
        ),
    ] = False,
    port: Annotated[
        int,
        typer.Option(
            "--port", min=0, max=65535, help="The app's port on 127.0.0.1 with --serve (0: any)."
        ),
    ] = 8000,
) -> None:
    """Tell the whole story on a virtual radio: pairing, wrong PINs, lockout, tickets, the app."""
    from chargepin.lab.demo import run

    raise typer.Exit(run(serve, port))


@bench_app.command("pairing")
@reports_errors
def bench_pairing(
    json_path: JsonOption = None,
    rounds: Annotated[
        int | None, typer.Option(min=1, help="Pairings to time (the bench's default if omitted).")
    ] = None,
    rss_pairings: Annotated[
        int | None,
        typer.Option(
            min=0, help="Pairings to run while watching memory (the bench's default if omitted)."
        ),
    ] = None,
    bonds: Annotated[
        str | None,
        typer.Option(
            help="Also time pairing with these numbers of bonds on the charger, e.g. 1,10,100,1000."
        ),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Draw the --bonds curve into this PNG file.")
    ] = None,
) -> None:
    """Time pairing and bonded reconnection on the virtual radio and watch the daemon's memory."""
    from chargepin.lab.bench import bond_points, run_pairing_bench

    counts = {"rounds": rounds, "rss_pairings": rss_pairings}
    series = bond_points(bonds) if bonds else ()
    raise typer.Exit(
        run_pairing_bench(
            json_path,
            **{name: n for name, n in counts.items() if n is not None},
            bonds=series,
            plot=plot,
        )
    )


@bench_app.command("reconnect")
@reports_errors
def bench_reconnect(
    json_path: JsonOption = None,
    rounds: Annotated[
        int, typer.Option(min=1, help="Reconnects to time per arm and bond count.")
    ] = 30,
    bonds: Annotated[
        str, typer.Option(help="Bonds the charger holds, in turn (ascending, comma-separated).")
    ] = "1,10,100,1000",
    png_path: Annotated[
        Path | None, typer.Option("--plot", help="Draw the series (PNG) to this file.")
    ] = None,
) -> None:
    """Time chargepin's part of a bonded reconnect (GATT cache vs rediscovery vs bare Bumble)."""
    from chargepin.lab.bench import bond_points
    from chargepin.lab.bench_reconnect import run_reconnect_bench

    raise typer.Exit(run_reconnect_bench(json_path, rounds, bond_points(bonds), png_path))


@bench_app.command("fleet")
@reports_errors
def bench_fleet(
    json_path: JsonOption = None,
    chargers: Annotated[
        int, typer.Option(min=1, help="Chargers to provision into the bench's database.")
    ] = 1_000_000,
    seconds: Annotated[
        float, typer.Option(min=0.01, help="Seconds of load per endpoint (split into slices).")
    ] = 5.0,
    concurrency: ConcurrencyOption = 8,
    db_url: BenchDbUrlOption = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Also measure the PIN reveal on this many API processes (needs --db-url).",
        ),
    ] = 1,
) -> None:
    """Time provisioning and the PIN reveal endpoint against a bare FastAPI endpoint."""
    from chargepin.lab.bench_fleet import run_fleet_bench

    raise typer.Exit(run_fleet_bench(json_path, chargers, seconds, concurrency, db_url, workers))


@bench_app.command("reveal-growth")
@reports_errors
def bench_reveal_growth(
    json_path: JsonOption = None,
    png_path: Annotated[
        Path | None, typer.Option("--png", help="Draw the curves into this PNG file.")
    ] = None,
    sizes: Annotated[
        str, typer.Option(help="Charger counts to grow through, comma-separated, increasing.")
    ] = "1000,10000,100000,1000000",
    audit_rows: Annotated[
        int, typer.Option(min=0, help="Audit rows to add at the largest size (0: no such step).")
    ] = 10_000_000,
    seconds: Annotated[
        float, typer.Option(min=0.01, help="Seconds of load per endpoint and step.")
    ] = 2.0,
    concurrency: ConcurrencyOption = 8,
    db_url: BenchDbUrlOption = None,
) -> None:
    """The PIN reveal's server CPU against a bare endpoint's as chargers and audit rows grow."""
    from chargepin.lab.bench_reveal_growth import run_growth_bench

    counts = tuple(int(n) for n in sizes.split(",") if n.strip())
    raise typer.Exit(
        run_growth_bench(json_path, png_path, counts, audit_rows, seconds, concurrency, db_url)
    )


@bench_app.command("limits")
@reports_errors
def bench_limits(
    json_path: JsonOption = None,
    db_url: Annotated[
        str | None,
        typer.Option(
            "--db-url",
            help="An empty PostgreSQL database (postgresql+psycopg://...); a fresh SQLite file "
            "if omitted.",
        ),
    ] = None,
    seconds: Annotated[float, typer.Option(min=0.1, help="Seconds of load per arm.")] = 5.0,
    concurrency: ConcurrencyOption = 8,
) -> None:
    """The per-source rate limit's cost per request, a flood past it, and back-pressure."""
    from chargepin.lab.bench_limits import run_limits_bench

    raise typer.Exit(run_limits_bench(json_path, db_url, seconds, concurrency))


@bench_app.command("app")
@reports_errors
def bench_web_app(
    json_path: JsonOption = None,
    chargers: Annotated[
        int,
        typer.Option(min=1, help="Chargers to provision (the measured accounts claim some)."),
    ] = 1_000_000,
    requests: Annotated[
        int, typer.Option(min=1, help="Measured requests per page (after a few unmeasured).")
    ] = 200,
    db_url: Annotated[
        str | None,
        typer.Option(
            "--db-url",
            help="An empty database to fill (postgresql+psycopg://...); a fresh SQLite file if "
            "omitted.",
        ),
    ] = None,
) -> None:
    """Weigh every page of the web app and time it in the server, on a 1M-charger database."""
    from chargepin.lab.bench_app import run_app_bench

    raise typer.Exit(run_app_bench(json_path, chargers, requests, db_url))


@bench_app.command("ocpp")
@reports_errors
def bench_ocpp(
    json_path: JsonOption = None,
    stations: Annotated[
        int, typer.Option(min=1, help="Simulated charging stations (chargers provisioned).")
    ] = 5_000,
    seconds: Annotated[
        float,
        typer.Option(min=0.01, help="Seconds of events per server and phase (split in slices)."),
    ] = 4.0,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Events in flight during the throughput phase.")
    ] = 32,
    clients: Annotated[
        int, typer.Option(min=1, help="Processes the stations are spread over.")
    ] = 2,
) -> None:
    """N stations against the fleet's CSMS and a bare `ocpp` CSMS: memory, boot storm, events."""
    from chargepin.lab.bench_ocpp import run_ocpp_bench

    raise typer.Exit(run_ocpp_bench(json_path, stations, seconds, concurrency, clients))


@bench_app.command("charger-events")
@reports_errors
def bench_charger_events(
    json_path: JsonOption = None,
    events: Annotated[int, typer.Option(min=1, help="Events per slice and arm.")] = 200,
    slices: Annotated[int, typer.Option(min=1, help="Slices per arm, interleaved.")] = 10,
) -> None:
    """CPU per security event on the charger (record, queue, send, answer) beside bare `ocpp`."""
    from chargepin.lab.bench_charger_events import run_charger_events_bench

    raise typer.Exit(run_charger_events_bench(json_path, events, slices))


@bench_app.command("fleet-scale")
@reports_errors
def bench_fleet_scale(
    json_path: JsonOption = None,
    chargers: Annotated[
        int, typer.Option(min=3, help="Chargers to provision into PostgreSQL.")
    ] = 1_000_000,
    stations: Annotated[
        int, typer.Option(min=2, help="Simulated OCPP stations (half on the gateway killed).")
    ] = 20_000,
    gateways: Annotated[
        int, typer.Option(min=2, max=64, help="`chargepin fleet gateway` processes.")
    ] = 3,
    clients: Annotated[
        int | None,
        typer.Option(min=1, help="Station processes (default: one per 5,000 stations)."),
    ] = None,
    seconds: Annotated[
        float, typer.Option(min=0.1, help="Seconds of steady events before the kill.")
    ] = 10.0,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Events in flight over all stations.")
    ] = 64,
    reveal_seconds: Annotated[
        float, typer.Option(min=0.1, help="Seconds of PIN reveals per arm (1, 2 workers, bare).")
    ] = 4.0,
    pgbench_seconds: Annotated[
        float, typer.Option(min=1, help="Seconds of each pgbench reference run.")
    ] = 10.0,
    pgbench_scale: Annotated[int, typer.Option(min=1, help="pgbench -i's scale.")] = 10,
    db_url: Annotated[
        str | None,
        typer.Option(
            help="A PostgreSQL server (postgresql+psycopg://user@host:port/db) where the bench "
            "makes a database of its own and drops it after (default: a throwaway cluster of "
            "its own, fsync on).",
        ),
    ] = None,
) -> None:
    """1M chargers in PostgreSQL, 20k OCPP stations over gateways, kill -9 of one, PIN reveal
    on 1 and 2 workers, pgbench as the reference (docs/PERFORMANCE.md, "Scale-out")."""
    from chargepin.lab.bench_fleet_scale import run_fleet_scale_bench

    raise typer.Exit(
        run_fleet_scale_bench(
            json_path,
            chargers,
            stations,
            gateways,
            clients,
            seconds,
            concurrency,
            reveal_seconds,
            pgbench_seconds,
            pgbench_scale,
            db_url,
        )
    )
